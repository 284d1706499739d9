"""Pixel masks of events: which pixels belong to rejected (or accepted) events.

:func:`mask_events` turns an event table back into an image mask so that the
pixels of, e.g., the events rejected as cosmic-ray background can be shown in
ds9 or passed on to ccdproc.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..meta import add_history, set_card
from .frames import as_energy_cube
from ..evaluation.selection import bit_mask

__all__ = ["mask_events", "event_pixel_mask", "WHICH"]

#: Accepted values of the ``which`` argument of :func:`mask_events`.
WHICH = ("rejected", "accepted", "all")


def select_events(events, which, bits):
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}.")
    n = len(events)
    if which == "all":
        return np.ones(n, bool)
    if "STATUS" not in events.colnames:
        raise ValueError(f"events has no STATUS column; which={which!r} needs it "
                         f"(use which='all' to mask every event).")
    status = np.asarray(events["STATUS"])
    if status.dtype.kind not in "iu":
        raise TypeError(f"events['STATUS'] must be integer bit flags, got dtype "
                        f"{status.dtype}.")
    hit = (status.astype(np.int64) & bit_mask(bits)) != 0
    return hit if which == "rejected" else ~hit


def event_pixel_mask(shape, frame, rawx, rawy, half_width=1):
    """Boolean cube marking the (2 h + 1)^2 pixels around each event centre.

    Parameters
    ----------
    shape : tuple of int
        (n_frames, rows, columns) of the cube.
    frame, rawx, rawy : array of int, shape (n_events,)
        0-based frame index, column and row of each event centre.
    half_width : int, optional
        1 (default) marks the 3 x 3 window, 2 the 5 x 5 window.  Windows are
        clipped at the frame edges.

    Returns
    -------
    `numpy.ndarray` of bool, shape ``shape``
    """
    mask = np.zeros(shape, dtype=bool)
    frame = np.asarray(frame, dtype=np.intp)
    rawx = np.asarray(rawx, dtype=np.intp)
    rawy = np.asarray(rawy, dtype=np.intp)
    if frame.size == 0:
        return mask
    ny, nx = shape[1], shape[2]
    for dy in range(-half_width, half_width + 1):
        y = rawy + dy
        for dx in range(-half_width, half_width + 1):
            x = rawx + dx
            ok = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
            mask[frame[ok], y[ok], x[ok]] = True
    return mask


def mask_events(frames, events, which="rejected", bits=None, *, gain=None, detector=None,
                include_bad_pixels=False):
    """Energy frames with a mask on the 3 x 3 pixels of the chosen events.

    Parameters
    ----------
    frames : Quantity, CCDData, NDData, FITS path or list of paths
        The frames the events were found in (any input of
        :func:`xcrfilter.io.frames.as_energy_cube`).
    events : `~astropy.table.Table`
        Columns ``FRAME``, ``RAWX``, ``RAWY`` (0-based) and, unless
        ``which="all"``, ``STATUS``.
    which : {"rejected", "accepted", "all"}, optional
        Mask the pixels of rejected events (any of ``bits`` set, default),
        accepted events (none of ``bits`` set) or every event.
    bits : int, str or iterable of int/str, optional
        STATUS bit numbers or names (``xcrfilter.registry.STATUS_BITS``, e.g.
        ``["GRADE", "OUTER_RING"]``) that count as a rejection.  Default: all.
    gain, detector : optional
        Passed to :func:`~xcrfilter.io.frames.as_energy_cube`.
    include_bad_pixels : bool, optional
        Also mask the input's bad pixels (input mask, NaN, inf).  Default
        False: the mask marks event pixels only.

    Returns
    -------
    `~astropy.nddata.CCDData`
        ``data`` the energy frames (float32, eV; bad pixels 0), 2-D if the
        input was one 2-D frame, else 3-D; ``mask`` True on the 3 x 3 window
        (clipped at the frame edge) of every chosen event; ``meta`` the input
        header plus ``MASKWHCH``, ``MASKBITS``, ``NMASKEV`` and a HISTORY line.
        The inputs are not modified.

    Raises
    ------
    TypeError
        If ``events`` is not a Table or ``STATUS`` is not integer.
    ValueError
        If ``which`` is unknown, a column is missing, an unknown bit is named,
        or an event lies outside the frames.
    """
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table or QTable, got "
                        f"{type(events).__name__}.")
    missing = [c for c in ("FRAME", "RAWX", "RAWY") if c not in events.colnames]
    if missing:
        raise ValueError(f"events lacks column(s) {missing}; needs FRAME, RAWX, RAWY.")
    chosen = select_events(events, which, bits)
    cube = as_energy_cube(frames, gain=gain, detector=detector, name="frames")
    nf, ny, nx = cube.data.shape
    frame = np.asarray(events["FRAME"])[chosen]
    rawx = np.asarray(events["RAWX"])[chosen]
    rawy = np.asarray(events["RAWY"])[chosen]
    for name, values, n in (("FRAME", frame, nf), ("RAWX", rawx, nx), ("RAWY", rawy, ny)):
        if values.size and (values.min() < 0 or values.max() >= n):
            raise ValueError(f"events['{name}'] has values outside 0..{n - 1} of the frames "
                             f"(shape {cube.data.shape}); were the events found in these "
                             f"frames?")
    mask = event_pixel_mask(cube.data.shape, frame, rawx, rawy)
    if include_bad_pixels:
        mask |= cube.mask
    header = cube.header.copy()
    set_card(header, "MASKWHCH", which, "mask marks the 3x3 pixels of these events")
    bits_text = "ALL" if bits is None else ",".join(str(b) for b in np.atleast_1d(bits))
    set_card(header, "MASKBITS", bits_text[:68], "STATUS bits counted as rejection")
    set_card(header, "NMASKEV", int(chosen.sum()), "number of masked events")
    set_card(header, "MASKBAD", bool(include_bad_pixels), "input bad pixels also masked")
    add_history(header, f"xcrfilter.io.masks.mask_events(which={which!r}, bits={bits!r})")
    header["BUNIT"] = "eV"
    data, out_mask = cube.data, mask
    if cube.was_2d:
        data, out_mask = data[0], mask[0]
    from astropy.nddata import CCDData
    return CCDData(data, unit=u.eV, mask=out_mask, meta=header)
