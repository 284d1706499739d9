"""Event finding and energy reconstruction on X-ray frames: the EVENTS table.

An *event* is a pixel at or above the event threshold that is the maximum of
its 3x3 window (seed paper Sec. 3.1).  Its energy is the sum of the pixels of
the 3x3 window at or above the split threshold; its ``PHAS`` column holds the
5x5 island around it, its ``GRADE`` and ``PATTERN`` come from the lookup
tables of :mod:`xcrfilter.grades`.  This module is the hot loop of the
package: it only visits the pixels above the event threshold (frames are
>99.9 % noise) and is vectorised over a whole cube of frames.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .grades import (EPIC_PATTERN_LUT, GRADE_LUT, IDX_3X3, IDX_OUTER,
                     pattern_code)
from .meta import add_history, set_card

__all__ = ["find_events", "FINDING_STATUS", "check_thresholds",
           "set_status_bit", "event_positions"]

#: STATUS bits of event finding itself, NAME -> (bit, meaning); the filters
#: declare theirs in their modules (``STATUS``), `xcrfilter.registry` joins them.
FINDING_STATUS = {
    "EDGE": (8, "5x5 island cut by the frame edge (optional)"),
}
EDGE_BIT = FINDING_STATUS["EDGE"][0]

# 5x5 window offsets, row-major, index 12 = centre.
_DY, _DX = np.divmod(np.arange(25), 5)
_DY = _DY - 2
_DX = _DX - 2
# neighbours preceding / following the centre in raster (row-major) order
_IDX_BEFORE = np.array([6, 7, 8, 11])
_IDX_AFTER = np.array([13, 16, 17, 18])


def _as_ev(value, name):
    if not isinstance(value, u.Quantity):
        raise TypeError(f"{name} must be an astropy Quantity with energy units "
                        f"(e.g. 260 * u.eV), got {value!r}.")
    try:
        v = float(value.to_value(u.eV))
    except (u.UnitConversionError, TypeError):
        raise u.UnitConversionError(
            f"{name} must have energy units (eV, keV), got {value.unit}.") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}.")
    return v


def event_positions(events, shape, what="the frames"):
    """``FRAME``, ``RAWY`` and ``RAWX`` of ``events``, checked against a cube.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with ``FRAME``, ``RAWY`` and ``RAWX``.
    shape : tuple of int
        ``(n_frames, ny, nx)`` of the frames (or label cube) they index.
    what : str
        How the error message names the cube.

    Returns
    -------
    frame, rawy, rawx : intp ndarray, shape (n_events,)

    Raises
    ------
    ValueError
        An event outside ``shape``.
    """
    f = np.asarray(events["FRAME"], np.intp)
    y = np.asarray(events["RAWY"], np.intp)
    x = np.asarray(events["RAWX"], np.intp)
    n, ny, nx = shape
    if f.size and (f.min() < 0 or f.max() >= n or y.min() < 0 or y.max() >= ny
                   or x.min() < 0 or x.max() >= nx):
        raise ValueError(f"events lie outside {what} ({n} frames of {ny} x {nx} pixels): "
                         "FRAME/RAWY/RAWX out of range")
    return f, y, x


def set_status_bit(table, bit, where):
    """Clear STATUS ``bit`` of every event of ``table``, then set it ``where`` True.

    What every filter does with its own bit, so that a re-run replaces its
    verdict and never touches the bits of the others.  ``table`` (the
    filter's own new table) gets a new int32 ``STATUS`` column.
    """
    status = np.asarray(table["STATUS"]).astype(np.int32)
    status &= np.int32(~(1 << bit))
    status[np.asarray(where, bool)] |= np.int32(1 << bit)
    table["STATUS"] = status


def check_thresholds(event_threshold, split_threshold, mip_threshold):
    """Validate thresholds and return them in eV as floats.

    Every threshold is required: None is refused with the argument's name
    (the MIP threshold sets STATUS bit 2, it cannot be switched off).

    Raises
    ------
    TypeError, astropy.units.UnitConversionError
        If a threshold is not an energy Quantity (None included).
    ValueError
        If a threshold is not positive, or ``split_threshold >
        event_threshold``, or ``event_threshold >= mip_threshold``.  A split
        threshold equal to the event threshold is allowed (the Athena WFI
        Geant4 background convention, 100 eV / 100 eV).
    """
    evt = _as_ev(event_threshold, "event_threshold")
    spl = _as_ev(split_threshold, "split_threshold")
    if spl > evt:
        raise ValueError(f"split_threshold ({split_threshold}) must not exceed "
                         f"event_threshold ({event_threshold}).")
    mip = _as_ev(mip_threshold, "mip_threshold")
    if mip <= evt:
        raise ValueError(f"mip_threshold ({mip_threshold}) must be above "
                         f"event_threshold ({event_threshold}).")
    return evt, spl, mip


def _gather_islands(flat, shape, cand):
    """5x5 islands (ncand, 25) around flat indices ``cand`` of a (n, ny, nx) cube."""
    n, ny, nx = shape
    f, rem = np.divmod(cand, ny * nx)
    y, x = np.divmod(rem, nx)
    yy = y[:, None] + _DY[None, :]
    xx = x[:, None] + _DX[None, :]
    inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
    idx = (f * (ny * nx))[:, None] + np.clip(yy, 0, ny - 1) * nx + np.clip(xx, 0, nx - 1)
    phas = flat[idx]
    phas[~inside] = 0.0
    return f, y, x, phas, inside


def _local_maxima(phas):
    """Tie rule: the centre must exceed the neighbours that precede it in
    raster order and be >= those that follow it, so on a plateau of equal
    values only the first pixel in row-major order becomes an event."""
    centre = phas[:, 12:13]
    return (np.all(centre > phas[:, _IDX_BEFORE], axis=1)
            & np.all(centre >= phas[:, _IDX_AFTER], axis=1))


def _islands_from_cube(data, evt, chunk_frames=4, strict=False):
    """Candidate event islands of a float32 (n, ny, nx) cube.

    The threshold pass runs a few frames at a time into one reused boolean
    buffer that stays in cache; only the pixels at or above ``evt`` (above
    it when ``strict``) are visited afterwards.
    """
    compare = np.greater if strict else np.greater_equal
    n, ny, nx = data.shape
    flat = data.reshape(-1)
    npix = ny * nx
    step = chunk_frames * npix
    buf = np.empty(min(step, flat.size), dtype=bool)
    parts = []
    for start in range(0, flat.size, step):
        sub = flat[start:start + step]
        hit = buf[:sub.size]
        compare(sub, evt, out=hit)
        if not hit.any():
            continue
        cand = np.flatnonzero(hit) + start
        # Candidates are gathered a block at a time and only the local maxima
        # kept: a saturated frame (every pixel a candidate, one event) then
        # costs a few MB instead of 25 pixels and their indices per pixel.
        for b in range(0, cand.size, _CANDIDATE_BLOCK):
            f, y, x, phas, inside = _gather_islands(flat, data.shape,
                                                    cand[b:b + _CANDIDATE_BLOCK])
            keep = _local_maxima(phas)
            parts.append((f[keep], y[keep], x[keep], phas[keep], inside[keep]))
    if not parts:
        return _gather_islands(flat, data.shape, np.zeros(0, dtype=np.int64))
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


#: Candidate pixels gathered at a time by :func:`_islands_from_cube`.
_CANDIDATE_BLOCK = 1 << 15


def island_properties(phas, split_ev, strict=False):
    """Energy, pattern code, ASCA grade and outer-ring activity of 5x5 islands.

    Parameters
    ----------
    phas : ndarray, shape (n, 25)
        5x5 islands in eV, row-major, centre at index 12.
    split_ev : float
        Split threshold in eV; pixels at or above it are active (above it
        when ``strict``).
    strict : bool, optional
        Use ``>`` instead of ``>=``.  Default False.

    Returns
    -------
    energy : float32 ndarray (n,)
        Sum of 3x3 pixels at or above the split threshold (eV).
    code : int32 ndarray (n,)
        3x3 pattern code (:func:`xcrfilter.grades.pattern_code`).
    grade : int16 ndarray (n,)
        ASCA grade.
    n_outer : int16 ndarray (n,)
        Number of active pixels in the 16-pixel outer ring.
    """
    phas = np.asarray(phas, dtype=np.float32).reshape(-1, 25)
    active = phas > np.float32(split_ev) if strict else phas >= np.float32(split_ev)
    p3 = phas[:, IDX_3X3]
    w = np.where(active[:, IDX_3X3], p3, np.float32(0))
    # add the columns one by one: a fixed order, so that an event's energy does
    # not depend on how many other events are summed with it (numpy's reduction
    # order does), e.g. on how the frames were split into chunks
    energy = w[:, 0].copy()
    for j in range(1, w.shape[1]):
        energy += w[:, j]
    code = pattern_code(active)
    grade = GRADE_LUT[code]
    n_outer = active[:, IDX_OUTER].sum(axis=1).astype(np.int16)
    return energy, code, grade, n_outer


def _pha_width(header, gain):
    """Energy of one PHA channel [eV]: the gain for frames in adu, else 1 eV."""
    from .io.bunit import check_gain
    if gain is not None:
        return float(check_gain(gain, "gain").to_value(u.eV / u.adu))
    bunit = str(header.get("BUNIT", "") if header is not None else "").strip().lower()
    if bunit in ("adu", "adus", "dn") and header.get("GAIN") is not None:
        return float(header["GAIN"])
    return 1.0


def find_events(frames, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                mip_threshold=10 * u.keV, *, gain=None, detector=None, strict=False,
                edge_status=False):
    """Find events (local maxima above the event threshold) in X-ray frames.

    Seed paper Sec. 3.1: an event is a pixel at or above ``event_threshold``
    that is the maximum of its 3x3 window.  Its ``ENERGY`` is the sum of the
    3x3 pixels at or above ``split_threshold``.  Masked and non-finite pixels
    are set to zero before the search, so they never seed or join an event.

    Parameters
    ----------
    frames : CCDData, NDData, Quantity, str, path, list of paths, or FrameCube
        `~astropy.nddata.CCDData`, `~astropy.nddata.NDData`,
        `~astropy.units.Quantity`, FITS path(s) or `~xcrfilter.io.frames.FrameCube`:
        one frame (ny, nx) or a cube (n_frames, ny, nx) in eV, keV,
        electron or adu (see :func:`xcrfilter.io.frames.as_energy_cube`).
    event_threshold : `~astropy.units.Quantity` [energy], optional
        Minimum energy of the central pixel.  Default 260 eV.
    split_threshold : `~astropy.units.Quantity` [energy], optional
        Pixels at or above it are *active* and join the event energy.
        Default 80 eV (3 sigma of 7 e- readout noise).
    mip_threshold : `~astropy.units.Quantity` [energy], optional
        Minimum-ionising-particle threshold, only recorded here (used by
        :func:`~xcrfilter.filters.vfaint.vfaint_filter`).  Default 10 keV.
    gain : `~astropy.units.Quantity` [energy / adu], optional
        Gain for frames in adu (else the ``GAIN`` keyword is used).
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Supplies the pair energy for frames in electrons.  Default WFI.
    strict : bool, optional
        Strict thresholds: a seed must be above (``>``) the event threshold
        and an active pixel above the split threshold, instead of at or
        above (``>=``), as the Athena WFI Geant4 background team counts.
        Default False.
    edge_status : bool, optional
        Set STATUS bit ``EDGE`` (:data:`xcrfilter.registry.STATUS_BITS`) on events whose 5x5
        island is cut by the frame edge (``EDGE`` column True).  Default
        False: the bit stays 0 and only the ``EDGE`` column marks them.

    Returns
    -------
    events : `~astropy.table.QTable`
        One row per event, sorted by (FRAME, RAWY, RAWX), columns
        ``FRAME`` (int32), ``RAWX``, ``RAWY`` (int32, 0-based column / row of
        the central pixel), ``ENERGY`` (float32, eV), ``PHA`` (int32, the
        same sum as ``ENERGY`` in detector channels: adu for frames in adu,
        1 eV channels otherwise; ``PHAWIDTH`` gives the channel width, see
        :func:`xcrfilter.io.ogip.pha_channels`), ``PI`` (int16, 5 eV channels
        0-4095, :func:`xcrfilter.io.ogip.pi_channels`), ``PHAS`` (float32, eV,
        shape (n, 25): the 5x5 island, row-major, centre at index 12, pixels
        outside the frame 0), ``GRADE`` (int16, ASCA 0-7, see
        :func:`xcrfilter.grades.asca_grade`), ``PATTERN`` (int16, EPIC-pn
        0-13, see :func:`xcrfilter.grades.epic_pattern`), ``EDGE`` (bool, the 5x5 window crosses a
        frame edge), ``STATUS`` (int32, 0, or bit ``EDGE`` with
        ``edge_status``).  ``meta`` records the thresholds (``EVTTHR``,
        ``SPLTHR``, ``MIPTHR`` in eV, ``STRICTTH``), frame geometry
        (``NFRAMES``, ``FRMROWS``, ``FRMCOLS``), ``PHAWIDTH``, the number of
        masked pixels (``NMASKED``) and a HISTORY line.

    Raises
    ------
    TypeError
        If a threshold is not a Quantity or ``frames`` has no units.
    ValueError
        If thresholds are out of order (split > event, event >= MIP), or
        ``frames`` is not 2-D/3-D, is empty or smaller than 5x5.
    """
    from .io.frames import FrameCube, as_energy_cube
    from .io.ogip import pha_channels, pi_channels

    evt, spl, mip = check_thresholds(event_threshold, split_threshold, mip_threshold)
    cube = frames if isinstance(frames, FrameCube) else as_energy_cube(
        frames, gain=gain, detector=detector, name="frames")
    data = cube.data
    f, y, x, phas, inside = _islands_from_cube(data, evt, strict=strict)
    energy, code, grade, n_outer = island_properties(phas, spl, strict=strict)
    width = _pha_width(cube.header, gain)

    events = QTable()
    events["FRAME"] = f.astype(np.int32)
    events["RAWX"] = x.astype(np.int32)
    events["RAWY"] = y.astype(np.int32)
    events["ENERGY"] = energy.astype(np.float32) * u.eV
    events["PHA"] = pha_channels(events["ENERGY"], width * u.eV)
    events["PI"] = pi_channels(events["ENERGY"])
    events["PHAS"] = phas.astype(np.float32) * u.eV
    events["GRADE"] = grade.astype(np.int16)
    events["PATTERN"] = EPIC_PATTERN_LUT[code]
    events["EDGE"] = ~np.all(inside, axis=1)
    status = np.zeros(len(f), dtype=np.int32)
    if edge_status:
        status[np.asarray(events["EDGE"])] |= np.int32(1 << EDGE_BIT)
    events["STATUS"] = status

    meta = events.meta
    n, ny, nx = data.shape
    set_card(meta, "EVTTHR", evt, "[eV] event threshold (central pixel)")
    set_card(meta, "SPLTHR", spl, "[eV] split threshold (active pixels)")
    set_card(meta, "MIPTHR", mip, "[eV] minimum ionising particle threshold")
    set_card(meta, "STRICTTH", bool(strict), "thresholds strict (>), else >=")
    set_card(meta, "EDGEBIT", bool(edge_status), "STATUS bit EDGE set on edge events")
    set_card(meta, "PHAWIDTH", width, "[eV] width of one PHA channel")
    set_card(meta, "NFRAMES", int(n), "number of frames searched")
    set_card(meta, "FRMROWS", int(ny), "rows per frame (RAWY range)")
    set_card(meta, "FRMCOLS", int(nx), "columns per frame (RAWX range)")
    set_card(meta, "NMASKED", int(np.count_nonzero(cube.mask)) if cube.mask is not None else 0,
             "masked or non-finite pixels (never in events)")
    if cube.filenames:
        for i, name in enumerate(cube.filenames[:99], start=1):
            set_card(meta, f"INFILE{i:02d}", str(name)[-68:], "input frame file")
    add_history(meta, f"find_events: event {evt:g} eV, split {spl:g} eV, "
                      f"{len(events)} events in {n} frames")
    return events
