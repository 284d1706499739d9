"""Event lists as input: read, normalise PHAS, and filter in event-list mode.

An event list is a FITS binary table with a 25-value ``PHAS`` column (the 5x5
island of every event): Chandra ACIS VFAINT, Suzaku XIS 5x5 or a Geant4
background team's list.  :func:`read_event_list` reads the ``EVENTS`` table (or
the first binary table when none is named ``EVENTS``), keeps every column and
keyword, and puts ``PHAS`` into this package's layout: energies, row-major
(RAWY major), centre at index 12.  :func:`filter_event_list` then sets the
very-faint-mode STATUS bits and adds ``GRADE`` (ASCA), ``PATTERN`` (EPIC-pn)
and ``PI``.

PHAS orders (``phas_order``):

``row-major``
    The 5x5 island in raster order, RAWY major, from (dx, dy) = (-2, -2) to
    (2, 2); centre at index 12 (Chandra ACIS, Suzaku XIS and this package).
``centre-first``
    Element 0 the centre, 1-8 the 3x3 ring in row-major order from
    (-1, -1) to (1, 1), 9-24 the outer 16 pixels in row-major order from
    (-2, -2) (the Athena WFI Geant4 background team's event lists).
"""
from __future__ import annotations

import os

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from ..meta import CARD_COMMENTS, add_history, card_value, set_card
from ..events import check_thresholds, island_properties
from ..grades import EPIC_PATTERN_LUT, IDX_OUTER
from .headers import header_to_meta

__all__ = ["PHAS_ORDERS", "CENTRE_FIRST_ORDER", "is_event_list", "read_event_list",
           "to_row_major", "filter_event_list"]

PHAS_ORDERS = ("row-major", "centre-first")
#: Row-major PHAS index of each centre-first element: centre, 3x3 ring, outer 16.
CENTRE_FIRST_ORDER = np.array([12, 6, 7, 8, 11, 13, 16, 17, 18] + list(IDX_OUTER))
#: Energy columns that take ``phas_unit`` when they are floats without ``TUNIT``.
_ENERGY_COLUMNS = ("PHAS", "ENERGY", "PHA")


def _event_hdu(hdul):
    if "EVENTS" in hdul:
        return hdul["EVENTS"]
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU):
            return hdu
    return None


def is_event_list(path):
    """True when the EVENTS (or first binary) table of ``path`` has a ``PHAS`` column."""
    try:
        with fits.open(os.fspath(path), mode="readonly", memmap=True) as hdul:
            hdu = _event_hdu(hdul)
            return hdu is not None and "PHAS" in [n.upper() for n in hdu.columns.names]
    except (OSError, ValueError):
        return False


def to_row_major(phas, order="row-major"):
    """PHAS of shape (n, 25) or (n, 5, 5) in ``order`` as row-major (n, 25).

    Raises
    ------
    ValueError
        If ``order`` is not one of :data:`PHAS_ORDERS` or PHAS has not 25 values.
    """
    if order not in PHAS_ORDERS:
        raise ValueError(f"phas_order must be one of {PHAS_ORDERS}, got {order!r}.")
    arr = phas.reshape(len(phas), -1)
    if arr.shape[1] != 25:
        raise ValueError(f"PHAS must hold 25 values (5x5) per event, got shape {phas.shape}.")
    if order == "row-major":
        return arr
    out = np.empty_like(arr)
    out[:, CENTRE_FIRST_ORDER] = arr
    return out


def read_event_list(path, *, phas_order="row-major", phas_unit=None):
    """Read an event list and bring ``PHAS`` to the package layout.

    Parameters
    ----------
    path : str or path-like
        FITS file; the ``EVENTS`` extension, else the first binary table.
    phas_order : {"row-major", "centre-first"}, optional
        Order of the 25 ``PHAS`` values in the file (module docstring).
        Default row-major.
    phas_unit : `~astropy.units.Unit` or str, optional
        Unit of the float ``PHAS``, ``ENERGY`` and ``PHA`` columns that have
        no ``TUNIT``; ignored for columns with one.

    Returns
    -------
    `~astropy.table.QTable`
        Every column of the table, in the file's order (``PHAS`` as (n, 25)
        row-major Quantity; energy columns as Quantities); ``meta`` the
        table's keywords (and those of the primary header not in it) as
        :func:`xcrfilter.io.eventfile.read_events` gives them, plus ``PHASORDR`` and a
        HISTORY line when the order or unit was converted.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If there is no binary table, no 25-value ``PHAS`` column, ``PHAS``
        has no unit and ``phas_unit`` is not given, or an energy is NaN or
        infinite.
    astropy.units.UnitConversionError
        If a unit is not an energy.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"event list {where!r} does not exist.")
    unit_given = None if phas_unit is None else u.Unit(phas_unit)
    if unit_given is not None and not unit_given.is_equivalent(u.eV):
        raise u.UnitConversionError(f"phas_unit must be an energy unit, got {unit_given}.")
    with fits.open(where, mode="readonly", memmap=False) as hdul:
        hdu = _event_hdu(hdul)
        if hdu is None:
            raise ValueError(f"{where}: no binary table (EVENTS extension) found.")
        header = hdu.header.copy()
        primary = hdul[0].header.copy()
        raw = Table.read(hdu, unit_parse_strict="silent")
    if "PHAS" not in raw.colnames:
        raise ValueError(f"{where}: the event table has no PHAS column; event-list mode "
                         f"needs the 5x5 island of every event. Columns: {raw.colnames}.")
    table = QTable()
    notes = []
    for name in raw.colnames:
        data = np.array(raw[name])
        if data.dtype.byteorder not in ("=", "|"):
            data = data.astype(data.dtype.newbyteorder("="))
        unit = raw[name].unit
        if isinstance(unit, u.UnrecognizedUnit):
            unit = None
        if unit is None and name.upper() in _ENERGY_COLUMNS and data.dtype.kind == "f":
            if unit_given is None and name.upper() == "PHAS":
                raise ValueError(f"{where}: PHAS has no TUNIT; give its unit (phas_unit, "
                                 f"--phas-unit eV or keV).")
            if unit_given is not None:
                unit = unit_given
                notes.append(f"{name} had no TUNIT: read in {unit}")
        if name.upper() == "PHAS":
            _check_phas_order(data, phas_order, where)
            data = to_row_major(data, phas_order)
            if phas_order != "row-major":
                notes.append(f"PHAS reordered from {phas_order} to row-major")
        if unit is not None and not (unit == u.chan and data.dtype.kind in "iu"):
            table[name] = u.Quantity(data, unit, copy=False)
        else:
            table[name] = data
    _check_finite(table, where)
    meta = header_to_meta(header)
    inherited = header_to_meta(primary)
    comments = inherited.pop(CARD_COMMENTS, {})
    for key, value in inherited.items():
        if key not in ("HISTORY", "COMMENT") and key not in meta:
            set_card(meta, key, value, comments.get(key, ""))
    set_card(meta, "PHASORDR", "row-major", "PHAS layout (centre at index 12)")
    table.meta = meta
    for note in notes:
        add_history(table.meta, f"read_event_list: {note}")
    return table


#: row-major indices of the 3x3 island around the centre (index 12)
_IDX_3X3 = np.array([6, 7, 8, 11, 12, 13, 16, 17, 18])


def _centre_not_max(phas, order):
    """Events whose centre pixel is not a positive 3x3 maximum in ``order``, and events."""
    rm = to_row_major(np.asarray(phas, np.float64), order)
    finite = np.isfinite(rm).all(axis=1)
    rm = rm[finite]
    centre = rm[:, 12]
    return int(np.count_nonzero((centre < rm[:, _IDX_3X3].max(axis=1)) | (centre <= 0))), \
        len(rm)


def _check_phas_order(phas, order, where):
    """Refuse a ``phas_order`` that puts most centres below a neighbour when another fits.

    The seed of an event is the largest pixel of its 3x3 island (event
    finders of every mission, this package's included); read in the wrong
    order, ``PHAS`` puts another pixel at the centre for most events.
    """
    if len(phas) == 0:
        return
    bad, n = _centre_not_max(phas, order)
    if n == 0 or bad <= n / 2:
        return
    for other in PHAS_ORDERS:
        if other == order:
            continue
        bad_other, _ = _centre_not_max(phas, other)
        if bad_other <= n / 2:
            raise ValueError(
                f"{where}: with phas_order {order!r} (--phas-order) the centre pixel of PHAS "
                f"is not the largest of its 3x3 island in {bad} of {n} events; with "
                f"{other!r} it is in all but {bad_other}: give --phas-order {other} "
                f"(phas_order={other!r}).")


def _check_finite(table, where):
    for name in table.colnames:
        if name.upper() not in _ENERGY_COLUMNS:
            continue
        values = np.asarray(getattr(table[name], "value", table[name]))
        if values.dtype.kind != "f":
            continue
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{where}: {name} has NaN or infinite values in "
                             f"{int(bad.sum())} event(s), first at row "
                             f"{int(np.flatnonzero(bad)[0])}; energies must be finite.")


def _check_input_energy(energy):
    """The input's ``ENERGY`` (kept as ``ENERGY_IN``): finite numbers in an energy unit."""
    unit = getattr(energy, "unit", None)
    kind = np.asarray(getattr(energy, "value", energy)).dtype.kind
    if kind not in "fiu":
        raise ValueError(f"events column 'ENERGY' must hold numbers, got dtype "
                         f"{np.asarray(energy).dtype}.")
    if unit is None or not u.Unit(unit).is_equivalent(u.eV):
        raise ValueError(f"events column 'ENERGY' must be in an energy unit (eV, keV; "
                         f"--phas-unit for a column without TUNIT), got {unit}.")
    bad = ~np.isfinite(np.asarray(getattr(energy, "value", energy), np.float64))
    if bad.any():
        raise ValueError(f"events column 'ENERGY' has NaN or infinite values in "
                         f"{int(bad.sum())} event(s); energies must be finite.")


def _free_name(table, name):
    """``name``, or ``name_X`` when the table already has a column ``name``."""
    return name if name not in table.colnames else f"{name}_X"


def filter_event_list(events, *, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                      mip_threshold=10 * u.keV, strict=False, frame_time=None, header=None):
    """Very-faint-mode filter in event-list mode, with GRADE, PATTERN and PI.

    Parameters
    ----------
    events : `~astropy.table.QTable`
        From :func:`read_event_list` (``PHAS`` row-major, in energy units).
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        As :func:`xcrfilter.filters.vfaint.vfaint_filter`.
    strict : bool, optional
        Strict (``>``) thresholds.  Default False.
    frame_time : `~astropy.units.Quantity` [time], optional
        For a ``TIME`` column from ``FRAME`` when the list has none (default
        the ``TIMEDEL``/``FRAMTIME``/``TEXPFRAM`` keyword).
    header : `~astropy.io.fits.Header` or dict, optional
        Keywords for the frame time; default ``events.meta``.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: every input column unchanged except ``ENERGY``, STATUS
        bits 0-2 set (``STATUS`` added when absent), and computed ``GRADE``
        (ASCA), ``PATTERN`` (EPIC-pn, 3x3 shape only) and ``PI`` (5 eV
        channels).  ``ENERGY`` is the event energy of the VF convention, the
        sum of the active pixels (at or above the split threshold) of the
        3x3 island, as for image frames and pixel tables: it decides bit 2
        (MIP) and gives ``PI``, so that the same events get the same verdict
        whatever the input format.  The file's own ``ENERGY`` (e.g. a 5x5
        sum) is kept unchanged as ``ENERGY_IN``, next to it.  A computed
        column whose name the input already uses is written as ``<NAME>_X``
        (e.g. ``PATTERN_X``) so the input's stays as it was.
        ``TIME`` and the OGIP time keywords are added when the list has
        ``FRAME`` but no ``TIME`` and a frame time is known.
    """
    from ..filters.vfaint import vfaint_filter
    from .ogip import pi_channels
    from .timing import add_time

    evt, spl, mip = check_thresholds(event_threshold, split_threshold, mip_threshold)
    # bit 2 (and PI) use the active 3x3 sum, as for frames and pixel tables: the
    # file's own ENERGY (a 5x5 sum for some teams) is kept as ENERGY_IN
    given = events.copy(copy_data=False)
    if "ENERGY" in given.colnames:
        _check_input_energy(given["ENERGY"])
        given.remove_column("ENERGY")
    out = vfaint_filter(None, given, event_threshold=event_threshold,
                        split_threshold=split_threshold, mip_threshold=mip_threshold,
                        strict=strict)
    phas = out["PHAS"].to_value(u.eV).reshape(len(out), 25)
    e3, code, grade, _ = island_properties(phas, spl, strict=strict)
    energy = (e3 * u.eV).astype(np.float32)
    if "ENERGY" in events.colnames:
        at = events.colnames.index("ENERGY")
        out.add_column(energy, name="ENERGY", index=at)
        out.add_column(events["ENERGY"], name=_free_name(events, "ENERGY_IN"), index=at + 1)
    else:
        out["ENERGY"] = energy
    computed = {"GRADE": grade.astype(np.int16), "PATTERN": EPIC_PATTERN_LUT[code],
                "PI": pi_channels(energy)}
    for name, values in computed.items():
        out[name if name not in events.colnames else f"{name}_X"] = values
    if "FRAME" in out.colnames and "TIME" not in out.colnames:
        frames = np.asarray(out["FRAME"])
        nkw = card_value(out.meta, "NFRAMES")
        n = max(int(nkw) if nkw is not None else 0, int(frames.max()) + 1 if len(frames) else 0)
        add_time(out, header if header is not None else out.meta, frame_time=frame_time,
                 n_frames=n, warn=False)
    return out
