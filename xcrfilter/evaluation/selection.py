"""Which events a verdict is about: truth, rejections, energy band and method bits.

The metrics (:mod:`xcrfilter.evaluation.metrics`) and ROC curves
(:mod:`xcrfilter.evaluation.roc`) take the truth of every event as bools
(True = CR) or class labels 0 (noise), 1 (X-ray), 2 (CR) (:func:`as_truth`)
and the rejections of a filter as bools (:func:`as_rejected`); the
rejections come from the ``STATUS`` bits of a report method such as ``VF``
or ``VF+SAC`` (:func:`rejected`, :func:`method_mask`) or of any bits
(:func:`rejected_by`), and the events from an energy band
(:func:`select_band`: lower end inclusive, upper end exclusive).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..registry import STATUS_BITS, method_bits, report_names
from ..units import DEFAULT_BAND, as_band

__all__ = ["as_truth", "as_rejected", "select_band", "rejected_by", "bit_mask", "method_mask",
           "rejected"]


def as_truth(truth, name="truth_is_cr"):
    """``(is_cr, valid)`` bool arrays from a bool array or class labels 0/1/2.

    ``valid`` is False for events with label 0 (noise), which enter no metric.
    """
    arr = np.asarray(truth)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per event), got shape {arr.shape}.")
    if arr.dtype == bool:
        return arr, np.ones(arr.shape, bool)
    if arr.dtype.kind in "iu":
        bad = ~np.isin(arr, (0, 1, 2))
        if bad.any():
            raise ValueError(
                f"{name} must be bool (True = CR) or class labels 0 (noise), 1 (X-ray), "
                f"2 (CR); found value {arr[bad][0]}.")
        return arr == 2, arr != 0
    raise TypeError(f"{name} must be a bool array (True = CR) or integer class labels "
                    f"0/1/2, got dtype {arr.dtype}.")


def as_rejected(values, name, n):
    """``values`` checked as the bool rejections of ``n`` events (True = rejected)."""
    arr = np.asarray(values)
    if arr.dtype != bool:
        raise TypeError(f"{name} must be a bool array (True = rejected), got dtype "
                        f"{arr.dtype}; use rejected_by(events, bits) for STATUS bits.")
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}, but truth has {n} events.")
    return arr


def select_band(events, band=DEFAULT_BAND):
    """Bool array: events with ``band[0] <= ENERGY < band[1]``.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Must have an ``ENERGY`` column with an energy unit.
    band : `~astropy.units.Quantity` [energy], shape (2,)
        Default 0.3-10 keV (seed paper Sec. 3.4).  Lower end inclusive,
        upper end exclusive.
    """
    lo, hi = as_band(band)
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table with an ENERGY column, got "
                        f"{type(events).__name__}.")
    if "ENERGY" not in events.colnames:
        raise ValueError("events has no ENERGY column.")
    col = events["ENERGY"]
    unit = getattr(col, "unit", None)
    if unit is None:
        raise TypeError("events['ENERGY'] has no unit; it must be an energy (eV).")
    energy = u.Quantity(col).to_value(u.eV)
    return (energy >= lo) & (energy < hi)


def rejected_by(events, bits=None):
    """Bool array: events whose ``STATUS`` has any of ``bits`` set.

    Parameters
    ----------
    events : `~astropy.table.Table`
        With an integer ``STATUS`` column.
    bits : int, str or iterable of int/str, optional
        Bit numbers or names of ``xcrfilter.registry.STATUS_BITS`` (e.g.
        ``"GRADE"``, ``5``).  Default: any bit.
    """
    if "STATUS" not in getattr(events, "colnames", ()):
        raise ValueError("events has no STATUS column.")
    status = np.asarray(events["STATUS"]).astype(np.int64)
    return (status & bit_mask(bits)) != 0


def bit_mask(bits):
    """STATUS bit mask (int64) of bit numbers or names; None: every bit."""
    if bits is None:
        return np.int64(-1)
    if isinstance(bits, (int, np.integer, str)):
        bits = [bits]
    mask = 0
    for b in bits:
        if isinstance(b, str):
            if b.upper() not in STATUS_BITS:
                raise ValueError(f"bits: unknown STATUS bit name {b!r}; known: "
                                 f"{sorted(STATUS_BITS)}.")
            b = STATUS_BITS[b.upper()]
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 0 <= b < 31:
            raise ValueError(f"bits must be bit numbers 0-30 or STATUS_BITS names, got {b!r}.")
        mask |= 1 << int(b)
    return np.int64(mask)


def method_mask(name):
    """STATUS bit mask of a report method, e.g. ``"VF"`` or ``"VF+SAC"`` (a union).

    The report names (``VF``, ``LACOSMIC``, ``SAC``, ``CAM``, ``MORPH``) are
    the filters' :attr:`~xcrfilter.contract.Filter.label`; their bits come
    from :func:`xcrfilter.registry.method_bits`.
    """
    labels = report_names()
    bits = 0
    for part in name.split("+"):
        if part not in labels:
            raise ValueError(f"unknown method {part!r}; choose from {sorted(labels)}.")
        bits |= method_bits(labels[part])
    return bits


def rejected(events, method):
    """True where ``method`` (e.g. ``"VF"``, ``"VF+SAC"``) rejects the event."""
    return (np.asarray(events["STATUS"]).astype(np.int64) & method_mask(method)) != 0
