"""Pixel units of frames: ``BUNIT``, the gain and the ADU offset, and the factor to eV.

Every command and function reads ``BUNIT`` here (:func:`parse_bunit`: an
energy, ``electron`` or ``adu``), finds the gain of adu frames (the
``gain`` argument, the detector model's, or the ``GAIN`` keyword:
:func:`frame_gain`; one meaning, an energy per adu, :mod:`xcrfilter.units`)
and the bias offset ``ADUOFFS`` (:func:`adu_offset`), and turns them into
the factor taking pixel values to eV (:func:`energy_factor`).
"""
from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

from ..units import PAIR_ENERGY, as_gain, header_gain

__all__ = ["ACCEPTED_UNITS", "parse_bunit", "unit_kind", "check_gain", "frame_gain",
           "energy_factor", "adu_offset"]

#: The pixel units frames may have (for error messages).
ACCEPTED_UNITS = "an energy (eV, keV), electron or adu"

_UNIT_ALIASES = {
    "ev": u.eV, "kev": u.keV, "electron": u.electron, "electrons": u.electron,
    "e-": u.electron, "e": u.electron, "adu": u.adu, "adus": u.adu, "dn": u.adu,
}


def parse_bunit(bunit, where):
    """The unit of a ``BUNIT`` value: an energy, electron or adu (ValueError naming ``where``)."""
    if bunit is None or str(bunit).strip() == "":
        raise ValueError(
            f"{where} has no BUNIT keyword; add BUNIT = 'eV', 'keV', 'electron' or 'adu' "
            f"to the header of the image HDU.")
    text = str(bunit).strip()
    unit = _UNIT_ALIASES.get(text.lower())
    if unit is None:
        unit = u.Unit(text, format="fits", parse_strict="silent")
        if isinstance(unit, u.UnrecognizedUnit):
            unit = u.Unit(text, parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit) or not unit_kind(unit):
        raise ValueError(
            f"{where}: unknown BUNIT {text!r}; expected {ACCEPTED_UNITS} "
            f"(e.g. 'eV', 'keV', 'electron', 'adu').")
    return unit


def unit_kind(unit):
    """'energy', 'electron', 'adu' or None."""
    if unit is None:
        return None
    try:
        if unit.is_equivalent(u.eV):
            return "energy"
        if unit.is_equivalent(u.electron):
            return "electron"
        if unit.is_equivalent(u.adu):
            return "adu"
    except Exception:  # pragma: no cover - exotic unit objects
        return None
    return None


def check_gain(gain, name, pair_energy=None):
    """Validate a gain Quantity; returns it in eV/adu (`xcrfilter.units.as_gain`)."""
    return as_gain(gain, name, pair_energy=PAIR_ENERGY if pair_energy is None else pair_energy)


def frame_gain(header, primary, detector, where):
    """GAIN keyword (image header, else primary) in eV/adu, or None."""
    for h in (header, primary):
        if h is not None and "GAIN" in h:
            return header_gain(h, pair_energy=detector.pair_energy, where=where)
    return None


def energy_factor(unit, *, gain, detector, header_gain, where):
    """Multiplicative factor taking values in ``unit`` to eV."""
    kind = unit_kind(unit)
    if gain is not None and kind in ("energy", "electron"):
        warnings.warn(f"{where} is in {unit}: the gain given is ignored (it converts adu "
                      "frames).", AstropyUserWarning, stacklevel=3)
    if kind == "energy":
        return float((1 * unit).to_value(u.eV))
    if kind == "electron":
        pair = detector.pair_energy.to_value(u.eV / u.electron)
        return float((1 * unit).to_value(u.electron)) * pair
    if kind == "adu":
        pair = detector.pair_energy if detector is not None else None
        if gain is not None:
            g = check_gain(gain, "gain", pair)
        elif detector is not None and detector.gain is not None:
            g = check_gain(detector.gain, "detector.gain", pair)
        elif header_gain is not None:
            g = header_gain  # already in eV/adu (frame_gain)
        else:
            raise ValueError(
                f"{where} is in adu but no gain is known: pass gain=<Quantity in eV/adu> "
                f"(e.g. gain=3.65 * u.eV / u.adu), set DetectorModel.gain, or add a GAIN "
                f"keyword in eV/adu to the header.")
        return float((1 * unit).to_value(u.adu)) * g.to_value(u.eV / u.adu)
    raise u.UnitConversionError(
        f"{where} has unit {unit!s}; expected {ACCEPTED_UNITS}.")


def adu_offset(header, primary=None, where="frames"):
    """The bias offset ``ADUOFFS`` [adu] of adu frames (image header, else primary), or 0.

    Raises
    ------
    ValueError
        ``ADUOFFS`` is not a finite number.
    """
    value = header.get("ADUOFFS", None if primary is None else primary.get("ADUOFFS"))
    if value is None:
        return 0.0
    try:
        offset = float(value)
    except (TypeError, ValueError):
        offset = float("nan")
    if isinstance(value, bool) or not np.isfinite(offset):
        raise ValueError(f"{where}: ADUOFFS keyword must be a finite number of adu, got "
                         f"{value!r}.")
    return offset
