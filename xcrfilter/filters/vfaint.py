"""The traditional (very-faint-mode) cosmic-ray filter.

Seed paper Sec. 3.1, after the Suzaku XIS 5x5 / Chandra ACIS very-faint-mode
cleaning: an event found by :func:`xcrfilter.events.find_events` is accepted
when

* its 3x3 active-pixel pattern (pixels at or above the split threshold) is a
  single, a non-diagonal double, an L-shaped triple or a square quad
  (otherwise STATUS bit 0);
* for a non-single, no pixel of the 16-pixel outer ring of the 5x5 window is
  active (otherwise STATUS bit 1);
* its energy (sum of the active 3x3 pixels) is in [event threshold, MIP
  threshold) (otherwise STATUS bit 2).

Rows are never dropped; re-running the filter recomputes bits 0-2 only.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..meta import card_value
from ..events import check_thresholds, find_events, island_properties
from ..grades import is_accepted_shape
from ..contract import Card, Filter, status_mask

__all__ = ["vfaint_filter", "vfaint_flags", "STATUS", "FILTER"]

#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {
    "GRADE": (0, "VF: 3x3 shape not single/double/L/quad"),
    "OUTER_RING": (1, "VF: non-single with active 5x5 outer pixel"),
    "ENERGY": (2, "VF: energy outside [event, MIP threshold)"),
}

_BIT_GRADE = np.int32(1 << STATUS["GRADE"][0])
_BIT_RING = np.int32(1 << STATUS["OUTER_RING"][0])
_BIT_ENERGY = np.int32(1 << STATUS["ENERGY"][0])
_VF_BITS = np.int32(status_mask(STATUS))


def vfaint_flags(phas, energy, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                 mip_threshold=10 * u.keV, *, strict=False):
    """STATUS bits 0-2 of the very-faint-mode filter for 5x5 islands.

    Parameters
    ----------
    phas : `~astropy.units.Quantity` [energy], shape (n, 25) or (n, 5, 5)
        5x5 islands, row-major, centre at index 12.
    energy : `~astropy.units.Quantity` [energy], shape (n,) or None
        Event energies used for the energy cut.  None: the sum of the active
        3x3 pixels of ``phas``.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Defaults 260 eV, 80 eV, 10 keV (seed paper Sec. 3.1).
    strict : bool, optional
        Active pixels are above (``>``) the split threshold and the energy
        must be above the event threshold, instead of at or above.  Default
        False.

    Returns
    -------
    ndarray of int32, shape (n,)
        Bit 0 invalid shape, bit 1 active outer-ring pixel around a
        non-single, bit 2 energy outside [event, MIP threshold) ((event, MIP)
        when ``strict``).

    Raises
    ------
    ValueError
        If ``phas`` or ``energy`` holds NaN or infinite values, or their
        lengths differ.
    """
    evt, spl, mip = check_thresholds(event_threshold, split_threshold, mip_threshold)
    phas = _energy_array(phas, "phas").reshape(-1, 25)
    e3, code, _, n_outer = island_properties(phas, spl, strict=strict)
    e = e3 if energy is None else _energy_array(energy, "energy").reshape(-1)
    if e.shape[0] != phas.shape[0]:
        raise ValueError(f"energy has {e.shape[0]} rows but phas has {phas.shape[0]}.")
    for name, values in (("PHAS", phas), ("ENERGY", e)):
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
            raise ValueError(f"{name} has non-finite (NaN or inf) values in {len(rows)} "
                             f"event(s), first at row {int(rows[0])}; the filter never "
                             "guesses a missing energy.")
    flags = np.zeros(phas.shape[0], dtype=np.int32)
    flags |= np.where(is_accepted_shape(code), 0, _BIT_GRADE).astype(np.int32)
    flags |= np.where((code != 0) & (n_outer > 0), _BIT_RING, 0).astype(np.int32)
    low = (e <= evt) if strict else (e < evt)
    flags |= np.where(low | (e >= mip), _BIT_ENERGY, 0).astype(np.int32)
    return flags


def _energy_array(value, name):
    if isinstance(value, u.Quantity):
        try:
            return value.to_value(u.eV).astype(np.float32, copy=False)
        except u.UnitConversionError:
            raise u.UnitConversionError(
                f"{name} must have energy units, got {value.unit}.") from None
    raise TypeError(f"{name} must be an astropy Quantity in energy units (eV), "
                    f"got {type(value).__name__}.")


def vfaint_filter(frames, events=None, *, event_threshold=260 * u.eV,
                  split_threshold=80 * u.eV, mip_threshold=10 * u.keV, gain=None,
                  detector=None, strict=False):
    """Apply the very-faint-mode filter: set STATUS bits 0, 1 and 2.

    Parameters
    ----------
    frames : frames, `~astropy.table.Table` or None
        Frames in any form accepted by :func:`~xcrfilter.events.find_events`
        (events are found first unless ``events`` is given), or an existing
        event table with a 5x5 ``PHAS`` column in energy units (event-list
        mode, e.g. Chandra VFAINT or Suzaku 5x5 data converted to eV; the same
        as ``frames=None, events=table``).  In event-list mode the
        ``ENERGY`` column, if present, is used for the energy cut; otherwise
        the energy is summed from ``PHAS``.
    events : `~astropy.table.Table`, optional
        Events with a 5x5 ``PHAS`` column [energy]; default: found in
        ``frames``.
    event_threshold : `~astropy.units.Quantity` [energy], optional
        Default 260 eV.
    split_threshold : `~astropy.units.Quantity` [energy], optional
        Default 80 eV.
    mip_threshold : `~astropy.units.Quantity` [energy], optional
        Default 10 keV.
    gain, detector : optional
        Passed to :func:`~xcrfilter.events.find_events` for frames.
    strict : bool, optional
        Strict (``>``) thresholds, see :func:`vfaint_flags`.  Default False.

    Returns
    -------
    events : `~astropy.table.QTable`
        A new table (the input is never modified) with every row kept and
        STATUS bits 0-2 cleared and recomputed; ``meta`` gains ``VFEVTTHR``,
        ``VFSPLTHR``, ``VFMIPTHR`` (eV) and a HISTORY line.

    Raises
    ------
    TypeError, ValueError, astropy.units.UnitConversionError
        For thresholds that are not energies or are out of order, tables
        without a 5x5 ``PHAS`` column, NaN or infinite ``PHAS``/``ENERGY``
        values, and bad frames.
    """
    evt, spl, mip = check_thresholds(event_threshold, split_threshold, mip_threshold)
    if events is None and isinstance(frames, Table):
        frames, events = None, frames
    if events is not None:
        source = events
        events = _events_from_table(events)
        phas = events["PHAS"]
        energy = events["ENERGY"] if "ENERGY" in events.colnames else None
        if energy is not None and not isinstance(energy, u.Quantity):
            energy = u.Quantity(np.asarray(energy), _column_unit(source, "ENERGY"))
        if not isinstance(phas, u.Quantity):
            phas = u.Quantity(np.asarray(phas), _column_unit(source, "PHAS"))
    elif frames is None:
        raise TypeError("vfaint_filter: give frames, or an events table with a 5x5 PHAS column")
    else:
        events = find_events(frames, event_threshold, split_threshold, mip_threshold,
                             gain=gain, detector=detector, strict=strict)
        phas = events["PHAS"]
        energy = events["ENERGY"]
    flags = vfaint_flags(phas, energy, event_threshold, split_threshold, mip_threshold,
                         strict=strict)
    status = np.asarray(events["STATUS"], dtype=np.int32) if "STATUS" in events.colnames \
        else np.zeros(len(events), dtype=np.int32)
    events["STATUS"] = (status & ~_VF_BITS) | flags
    nrej = int(np.count_nonzero(flags))
    FILTER.record(
        events.meta, dict(event_threshold=evt, split_threshold=spl, mip_threshold=mip,
                          strict=bool(strict)),
        history=f"vfaint_filter: bits 0-2 set, {nrej} of {len(events)} events "
        f"rejected (event {evt:g}, split {spl:g}, MIP {mip:g} eV)")
    return events


def _column_unit(table, name):
    unit = table[name].unit if hasattr(table[name], "unit") else None
    if unit is None:
        unit = card_value(table.meta, f"TUNIT_{name}", None)
    if unit is None:
        raise ValueError(f"events column {name!r} has no unit; PHAS/ENERGY must be "
                         "in energy units (eV).")
    return u.Unit(unit)


def _events_from_table(table):
    from astropy.table import QTable
    if not isinstance(table, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(table).__name__}")
    if "PHAS" not in table.colnames:
        raise ValueError("events table has no 'PHAS' column: the very-faint-mode "
                         "filter needs the 5x5 island of every event.")
    shape = np.shape(table["PHAS"])
    if len(shape) not in (2, 3) or int(np.prod(shape[1:])) != 25:
        raise ValueError(f"events column 'PHAS' must hold 25 values (5x5) per event, "
                         f"got shape {shape}.")
    return QTable(table, copy=True)


# -- the declaration (xcrfilter.registry) ------------------------------------

def pipeline_step(cube, events, *, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                  mip_threshold=10 * u.keV, strict=False):
    """Pipeline form of :func:`vfaint_filter` on already-found events."""
    return vfaint_filter(None, events, event_threshold=event_threshold,
                         split_threshold=split_threshold, mip_threshold=mip_threshold,
                         strict=strict)


#: The filter's declaration: it has no options of its own, it uses the
#: pipeline's thresholds and threshold convention.
FILTER = Filter(name="vfaint", step=pipeline_step, status=STATUS, report_name="VF",
                card_prefix="VF",
                shared=("event_threshold", "split_threshold", "mip_threshold", "strict"),
                shared_cards={
                    "event_threshold": Card("VFEVTTHR", "VF filter event threshold"),
                    "split_threshold": Card("VFSPLTHR", "VF filter split threshold"),
                    "mip_threshold": Card("VFMIPTHR", "VF filter MIP threshold"),
                    "strict": Card("VFSTRICT", "VF thresholds strict (>), else >=")})
