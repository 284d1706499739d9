"""Energies, energy bands and gain: their one definition and validation.

Conventions of the whole package
--------------------------------
* **Energies** are `~astropy.units.Quantity` objects in any energy unit;
  internally (arrays, header cards) they are in eV.
* **The scored band** of the filters and of the metrics is
  :data:`DEFAULT_BAND`, 0.3-10 keV (seed paper Sec. 4), defined here only.
* **GAIN** is the energy of one ADU, in **eV/adu**, everywhere: the
  ``gain`` argument of every function, the ``--gain`` option of every command
  and the ``GAIN`` header keyword.  A Quantity removes any ambiguity: a gain
  in ``electron / adu`` (the convention of optical CCDs and of astroscrappy)
  is converted with the detector's mean pair-creation energy (3.65
  eV/electron by default).  A header ``GAIN`` whose comment starts with a
  unit in brackets, e.g. ``[electron/adu]``, is read in that unit (the FITS
  convention for units in comments); without it, eV/adu.
"""
from __future__ import annotations

import re

import astropy.units as u
import numpy as np

__all__ = ["DEFAULT_BAND", "GAIN_UNIT", "PAIR_ENERGY", "as_energy", "as_band", "as_gain",
           "energy_values", "header_gain", "as_probability"]

#: Scored energy band of the filters and metrics (0.3-10 keV).
DEFAULT_BAND = (0.3, 10.0) * u.keV

#: The unit of every gain: energy per ADU.
GAIN_UNIT = u.eV / u.adu

#: Default mean energy per electron-hole pair in silicon.
PAIR_ENERGY = 3.65 * u.eV / u.electron


def as_energy(value, name, *, allow_zero=False):
    """A finite positive energy in eV.

    Parameters
    ----------
    value : `~astropy.units.Quantity` [energy]
    name : str
        Parameter name for the error messages.
    allow_zero : bool, optional
        Accept 0 eV.  Default False.

    Returns
    -------
    float
        The energy [eV].

    Raises
    ------
    TypeError
        ``value`` is not a Quantity.
    astropy.units.UnitConversionError
        ``value`` is not an energy.
    ValueError
        NaN, infinite, negative (or zero) energies, or not a scalar.
    """
    if not isinstance(value, u.Quantity):
        raise TypeError(f"{name} must be an astropy Quantity in energy units, got {value!r}.")
    try:
        ev = value.to_value(u.eV)
    except u.UnitConversionError:
        raise u.UnitConversionError(f"{name} must be an energy, got {value}.") from None
    if np.ndim(ev) != 0:
        raise ValueError(f"{name} must be a scalar energy, got shape {np.shape(ev)}.")
    ev = float(ev)
    if not np.isfinite(ev) or ev < 0 or (ev == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else 'positive'}, "
                         f"got {ev} eV.")
    return ev


def as_band(band, name="band"):
    """An energy band ``[low, high)`` in eV.

    Parameters
    ----------
    band : `~astropy.units.Quantity` [energy], shape (2,)
        E.g. :data:`DEFAULT_BAND`.
    name : str, optional
        Parameter name for the error messages.

    Returns
    -------
    (float, float)
        Low and high edges [eV], ``0 <= low < high < inf``.

    Raises
    ------
    TypeError, astropy.units.UnitConversionError, ValueError
        Not a Quantity, not energies, not two finite increasing values.
    """
    if not isinstance(band, u.Quantity):
        raise TypeError(f"{name} must be a Quantity pair of energies, e.g. (0.3, 10) * u.keV; "
                        f"got {type(band).__name__} {band!r}.")
    try:
        values = np.asarray(band.to_value(u.eV), dtype=float)
    except u.UnitConversionError:
        raise u.UnitConversionError(f"{name} must be in energy units, got {band.unit}.") \
            from None
    if values.shape != (2,):
        raise ValueError(f"{name} must hold two energies (low, high), got {band}.")
    lo, hi = float(values[0]), float(values[1])
    if not (np.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"{name} must be (low, high) with 0 <= low < high, finite, got {band}.")
    return lo, hi


def as_gain(gain, name="gain", *, pair_energy=PAIR_ENERGY):
    """A gain as a Quantity in eV/adu.

    Parameters
    ----------
    gain : `~astropy.units.Quantity`
        In eV/adu (any energy per adu), in electron/adu (converted with
        ``pair_energy``) or a bare energy (read as per adu).
    name : str, optional
        Parameter name for the error messages.
    pair_energy : `~astropy.units.Quantity` [energy / electron], optional
        Mean pair-creation energy.  Default 3.65 eV/electron.

    Returns
    -------
    `~astropy.units.Quantity` [eV / adu], scalar

    Raises
    ------
    TypeError
        ``gain`` is a bare number (ambiguous: eV/adu or electron/adu?).
    astropy.units.UnitConversionError
        A unit that is neither energy nor electrons per adu.
    ValueError
        Not a finite positive scalar.
    """
    if not isinstance(gain, u.Quantity):
        raise TypeError(f"{name} must be an astropy Quantity in eV/adu (e.g. 3.65 * u.eV / "
                        f"u.adu; 1.9 * u.electron / u.adu is converted with the pair energy), "
                        f"got {type(gain).__name__} {gain!r}.")
    if gain.unit.is_equivalent(u.eV) or gain.unit.is_equivalent(u.electron):
        gain = gain / u.adu
    if gain.unit.is_equivalent(u.electron / u.adu):
        gain = gain.to(u.electron / u.adu) * pair_energy.to(u.eV / u.electron)
    try:
        gain = gain.to(GAIN_UNIT)
    except u.UnitConversionError:
        raise u.UnitConversionError(f"{name} must be in eV/adu or electron/adu (energy or "
                                    f"charge per ADU), got unit {gain.unit}.") from None
    if gain.size != 1:
        raise ValueError(f"{name} must be a scalar, got shape {gain.shape}.")
    value = float(np.ravel(gain.value)[0])
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive Quantity in eV/adu, got {gain}.")
    return value * GAIN_UNIT


_BRACKET = re.compile(r"^\s*\[([^\]]+)\]")


def header_gain(header, *, pair_energy=PAIR_ENERGY, where="header"):
    """The ``GAIN`` keyword of a FITS header as a Quantity in eV/adu, or None.

    Parameters
    ----------
    header : `~astropy.io.fits.Header` or dict
    pair_energy : `~astropy.units.Quantity` [energy / electron], optional
        For a ``GAIN`` declared in electron/adu.
    where : str, optional
        Name of the input in error messages.

    Returns
    -------
    `~astropy.units.Quantity` [eV / adu] or None
        None when there is no ``GAIN`` keyword.

    Raises
    ------
    ValueError
        ``GAIN`` is not a positive number, or its comment declares a unit
        that is not a gain.
    """
    if header is None or "GAIN" not in header:
        return None
    value = header["GAIN"]
    if isinstance(value, tuple):
        value, comment = value[0], (value[1] if len(value) > 1 else "")
    else:
        comment = header.comments["GAIN"] if hasattr(header, "comments") else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{where}: GAIN keyword must be a number in eV/adu, got {value!r}.")
    match = _BRACKET.match(str(comment or ""))
    unit = GAIN_UNIT
    if match:
        try:
            unit = u.Unit(match.group(1).strip().replace("e-", "electron"))
        except ValueError:
            raise ValueError(f"{where}: GAIN comment declares unit {match.group(1)!r}, not "
                             "a gain (eV/adu or electron/adu).") from None
        if unit.is_equivalent(u.electron / u.electron) or unit == u.dimensionless_unscaled:
            unit = u.electron / u.adu  # e.g. '[electron/electron]' of frames in electrons
    try:
        return as_gain(float(value) * unit, f"GAIN keyword of {where}", pair_energy=pair_energy)
    except u.UnitConversionError as exc:
        raise ValueError(str(exc)) from None


def as_probability(value, default, name="threshold"):
    """A probability threshold in [0, 1] as a float; ``None`` gives ``default``.

    Raises
    ------
    TypeError
        If ``value`` is a bool or not a number (a dimensionless Quantity is
        accepted).
    ValueError
        If it is outside [0, 1] or NaN.
    """
    if value is None:
        return float(default)
    if isinstance(value, u.Quantity):
        value = value.to_value(u.dimensionless_unscaled)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a probability in [0, 1], got {value!r}")
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


def energy_values(column, unit=u.eV):
    """The values of an energy column of an event table, as float64 in ``unit``.

    ``column`` is a Quantity, a table column with an energy unit, or a
    column without a unit (or dimensionless), which holds eV (the events
    contract of `xcrfilter.events.find_events`).
    """
    if isinstance(column, u.Quantity):
        return np.asarray(column.to_value(unit), np.float64)
    col_unit = getattr(column, "unit", None)
    if col_unit is not None and col_unit != u.dimensionless_unscaled:
        return np.asarray(u.Quantity(column).to_value(unit), np.float64)
    return np.asarray((np.asarray(column, np.float64) * u.eV).to_value(unit), np.float64)
