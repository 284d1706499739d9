"""Event finding, ASCA grades and energy reconstruction on X-ray frames.

An *event* is a pixel at or above the event threshold that is the maximum of
its 3x3 window (seed paper Sec. 3.1).  Its energy is the sum of the pixels of
the 3x3 window at or above the split threshold; its ``PHAS`` column holds the
5x5 island around it.  This module is the hot loop of the package: it only
visits the pixels above the event threshold (frames are >99.9 % noise) and is
vectorised over a whole cube of frames.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ._meta import add_history, set_card

__all__ = ["find_events", "asca_grade", "pattern_code", "is_accepted_shape",
           "STATUS_BITS", "GRADE_LUT", "ACCEPTED_SHAPE_LUT", "NEIGHBOUR_BITS",
           "check_thresholds"]

#: STATUS bit numbers (an event is accepted by a method when its bits are 0).
STATUS_BITS = {
    "GRADE": 0,        # invalid 3x3 shape (very-faint-mode filter)
    "OUTER_RING": 1,   # non-single with an active pixel in the 5x5 outer ring
    "ENERGY": 2,       # energy outside [event threshold, MIP threshold)
    "LACOSMIC": 3,     # 3x3 touches the Laplacian (astroscrappy) CR mask
    "SAC": 4,          # inside a self-anti-coincidence zone around a track
    "CAM": 5,          # CAM filter PROB_CR >= threshold
}

# 5x5 window offsets, row-major, index 12 = centre.
_DY, _DX = np.divmod(np.arange(25), 5)
_DY = _DY - 2
_DX = _DX - 2
#: indices of the 3x3 window inside the 25-element PHAS vector
IDX_3X3 = np.array([6, 7, 8, 11, 12, 13, 16, 17, 18])
#: indices of the 16-pixel outer ring of the 5x5 window
IDX_OUTER = np.array([i for i in range(25) if i not in set(IDX_3X3.tolist())])
# neighbours preceding / following the centre in raster (row-major) order
_IDX_BEFORE = np.array([6, 7, 8, 11])
_IDX_AFTER = np.array([13, 16, 17, 18])

#: Bit value of each 3x3 neighbour in :func:`pattern_code`, keyed by PHAS index.
#: Rows increase with RAWY; "up" is +RAWY (row 0 at the bottom, as ds9 shows
#: FITS images).  Layout (as seen in ds9)::
#:
#:       32  64 128      (RAWY + 1)
#:        8   .  16      (RAWY)
#:        1   2   4      (RAWY - 1)
#:
#: the same numbering as Chandra ACIS "fltgrade" codes.
NEIGHBOUR_BITS = {6: 1, 7: 2, 8: 4, 11: 8, 13: 16, 16: 32, 17: 64, 18: 128}
_BIT_WEIGHTS = np.zeros(25, dtype=np.int32)
for _k, _v in NEIGHBOUR_BITS.items():
    _BIT_WEIGHTS[_k] = _v

_DL, _D, _DR, _L, _R, _UL, _U, _UR = 1, 2, 4, 8, 16, 32, 64, 128
_SIDES = (_D, _L, _R, _U)
_CORNERS = (_DL, _DR, _UL, _UR)
# corners touching each side pixel
_TOUCH = {_D: _DL | _DR, _U: _UL | _UR, _L: _DL | _UL, _R: _DR | _UR}


def _asca_grade_of_code(code):
    sides = [s for s in _SIDES if code & s]
    corners = code & (_DL | _DR | _UL | _UR)
    if not sides:
        return 0 if corners == 0 else 1
    if len(sides) == 1:
        s = sides[0]
        if corners & _TOUCH[s]:
            return 5
        return {_D: 2, _U: 2, _L: 3, _R: 4}[s]
    if len(sides) == 2:
        a, b = sides
        vertical = {_D, _U}
        if (a in vertical) != (b in vertical):
            enclosed = _TOUCH[a] & _TOUCH[b]
            opposite = (_DL | _DR | _UL | _UR) & ~(_TOUCH[a] | _TOUCH[b])
            if corners & ~(enclosed | opposite):
                return 7
            return 6
    return 7


def _accepted_shape_of_code(code):
    # single, non-diagonal double, L-shaped triple, square quad (paper Sec. 3.1)
    sides = [s for s in _SIDES if code & s]
    corners = code & (_DL | _DR | _UL | _UR)
    if not sides:
        return corners == 0
    if len(sides) == 1:
        return corners == 0
    if len(sides) == 2:
        a, b = sides
        vertical = {_D, _U}
        if (a in vertical) == (b in vertical):
            return False
        return corners in (0, _TOUCH[a] & _TOUCH[b])
    return False


#: ASCA grade (0-7) of each of the 256 3x3 patterns (index = :func:`pattern_code`).
GRADE_LUT = np.array([_asca_grade_of_code(c) for c in range(256)], dtype=np.int16)
#: True for the 13 patterns the very-faint-mode filter accepts.
ACCEPTED_SHAPE_LUT = np.array([_accepted_shape_of_code(c) for c in range(256)], dtype=bool)


def pattern_code(active):
    """Code (0-255) of the active-pixel pattern around the centre of 3x3/5x5 windows.

    Parameters
    ----------
    active : bool ndarray, shape (n, 25) or (n, 5, 5) or (n, 3, 3)
        Active (>= split threshold) flags of 5x5 islands (row-major, centre
        at index 12) or of 3x3 windows.

    Returns
    -------
    ndarray of int32, shape (n,)
        Sum of :data:`NEIGHBOUR_BITS` of the active neighbours.
    """
    active = np.asarray(active, dtype=bool)
    n = active.shape[0]
    if active.shape[1:] in ((3, 3), (9,)):
        full = np.zeros((n, 25), dtype=bool)
        full[:, IDX_3X3] = active.reshape(n, 9)
        active = full
    active = active.reshape(n, 25)
    return active.astype(np.int32) @ _BIT_WEIGHTS


def asca_grade(code):
    """ASCA grade (0-7) of pattern codes from :func:`pattern_code`.

    The mapping follows the ASCA scheme (as tabulated for Chandra ACIS
    ``fltgrade`` codes): 0 single; 1 single with corner pixels only;
    2 vertical split, 3 left split, 4 right split (corners not touching the
    split pixel are ignored); 5 single-sided split with a corner touching
    the split pixel; 6 L-shaped or square split (the corner enclosed by the
    two split pixels and the opposite corner are ignored); 7 everything else.
    """
    return GRADE_LUT[np.asarray(code, dtype=np.int64)]


def is_accepted_shape(code):
    """True where the 3x3 pattern is a single, a non-diagonal double, an
    L-shaped triple or a square quad (seed paper Sec. 3.1; no other active
    pixel in the 3x3 window)."""
    return ACCEPTED_SHAPE_LUT[np.asarray(code, dtype=np.int64)]


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


def check_thresholds(event_threshold, split_threshold, mip_threshold=None):
    """Validate thresholds and return them in eV as floats.

    Raises
    ------
    TypeError, astropy.units.UnitConversionError
        If a threshold is not an energy Quantity.
    ValueError
        If a threshold is not positive, or ``split_threshold >=
        event_threshold``, or ``event_threshold >= mip_threshold``.
    """
    evt = _as_ev(event_threshold, "event_threshold")
    spl = _as_ev(split_threshold, "split_threshold")
    if spl >= evt:
        raise ValueError(f"split_threshold ({split_threshold}) must be below "
                         f"event_threshold ({event_threshold}).")
    mip = None
    if mip_threshold is not None:
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


def _islands_from_cube(data, evt, chunk_frames=4):
    """Candidate event islands of a float32 (n, ny, nx) cube.

    The threshold pass runs a few frames at a time into one reused boolean
    buffer that stays in cache; only the pixels at or above ``evt`` are
    visited afterwards.
    """
    n, ny, nx = data.shape
    flat = data.reshape(-1)
    npix = ny * nx
    step = chunk_frames * npix
    buf = np.empty(min(step, flat.size), dtype=bool)
    cands = []
    for start in range(0, flat.size, step):
        sub = flat[start:start + step]
        hit = buf[:sub.size]
        np.greater_equal(sub, evt, out=hit)
        if hit.any():
            cands.append(np.flatnonzero(hit) + start)
    cand = np.concatenate(cands) if cands else np.zeros(0, dtype=np.int64)
    f, y, x, phas, inside = _gather_islands(flat, data.shape, cand)
    keep = _local_maxima(phas)
    return f[keep], y[keep], x[keep], phas[keep], inside[keep]


def island_properties(phas, split_ev):
    """Energy, pattern code, ASCA grade and outer-ring activity of 5x5 islands.

    Parameters
    ----------
    phas : ndarray, shape (n, 25)
        5x5 islands in eV, row-major, centre at index 12.
    split_ev : float
        Split threshold in eV; pixels at or above it are active.

    Returns
    -------
    energy : float32 ndarray (n,)
        Sum of 3x3 pixels at or above the split threshold (eV).
    code : int32 ndarray (n,)
        3x3 pattern code (:func:`pattern_code`).
    grade : int16 ndarray (n,)
        ASCA grade.
    n_outer : int16 ndarray (n,)
        Number of active pixels in the 16-pixel outer ring.
    """
    phas = np.asarray(phas, dtype=np.float32).reshape(-1, 25)
    active = phas >= np.float32(split_ev)
    p3 = phas[:, IDX_3X3]
    energy = np.where(active[:, IDX_3X3], p3, np.float32(0)).sum(axis=1, dtype=np.float32)
    code = active.astype(np.int32) @ _BIT_WEIGHTS
    grade = GRADE_LUT[code]
    n_outer = active[:, IDX_OUTER].sum(axis=1).astype(np.int16)
    return energy, code, grade, n_outer


def find_events(frames, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                mip_threshold=10 * u.keV, *, gain=None, detector=None):
    """Find events (local maxima above the event threshold) in X-ray frames.

    Seed paper Sec. 3.1: an event is a pixel at or above ``event_threshold``
    that is the maximum of its 3x3 window.  Its ``ENERGY`` is the sum of the
    3x3 pixels at or above ``split_threshold``.  Masked and non-finite pixels
    are set to zero before the search, so they never seed or join an event.

    Parameters
    ----------
    frames : CCDData, NDData, Quantity, str, path, list of paths, or FrameCube
        `~astropy.nddata.CCDData`, `~astropy.nddata.NDData`,
        `~astropy.units.Quantity`, FITS path(s) or `~xcrfilter.io.FrameCube`:
        one frame (ny, nx) or a cube (n_frames, ny, nx) in eV, keV,
        electron or adu (see :func:`xcrfilter.io.as_energy_cube`).
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

    Returns
    -------
    events : `~astropy.table.QTable`
        One row per event, sorted by (FRAME, RAWY, RAWX), columns
        ``FRAME`` (int32), ``RAWX``, ``RAWY`` (int32, 0-based column / row of
        the central pixel), ``ENERGY`` (float32, eV), ``PHA`` (float32, eV,
        central pixel), ``PHAS`` (float32, eV, shape (n, 25): the 5x5
        island, row-major, centre at index 12, pixels outside the frame 0),
        ``GRADE`` (int16, ASCA 0-7, see :func:`asca_grade`), ``EDGE`` (bool,
        the 5x5 window crosses a frame edge), ``STATUS`` (int32, all 0).
        ``meta`` records the thresholds (``EVTTHR``, ``SPLTHR``, ``MIPTHR``
        in eV), frame geometry (``NFRAMES``, ``FRMROWS``, ``FRMCOLS``),
        the number of masked pixels (``NMASKED``) and a HISTORY line.

    Raises
    ------
    TypeError
        If a threshold is not a Quantity or ``frames`` has no units.
    ValueError
        If thresholds are out of order (split >= event, event >= MIP), or
        ``frames`` is not 2-D/3-D, is empty or smaller than 5x5.
    """
    from .io import FrameCube, as_energy_cube

    evt, spl, mip = check_thresholds(event_threshold, split_threshold, mip_threshold)
    cube = frames if isinstance(frames, FrameCube) else as_energy_cube(
        frames, gain=gain, detector=detector, name="frames")
    data = cube.data
    f, y, x, phas, inside = _islands_from_cube(data, evt)
    energy, code, grade, n_outer = island_properties(phas, spl)

    events = QTable()
    events["FRAME"] = f.astype(np.int32)
    events["RAWX"] = x.astype(np.int32)
    events["RAWY"] = y.astype(np.int32)
    events["ENERGY"] = energy.astype(np.float32) * u.eV
    events["PHA"] = phas[:, 12].astype(np.float32) * u.eV
    events["PHAS"] = phas.astype(np.float32) * u.eV
    events["GRADE"] = grade.astype(np.int16)
    events["EDGE"] = ~np.all(inside, axis=1)
    events["STATUS"] = np.zeros(len(f), dtype=np.int32)

    meta = events.meta
    n, ny, nx = data.shape
    set_card(meta, "EVTTHR", evt, "[eV] event threshold (central pixel)")
    set_card(meta, "SPLTHR", spl, "[eV] split threshold (active pixels)")
    set_card(meta, "MIPTHR", mip, "[eV] minimum ionising particle threshold")
    set_card(meta, "NFRAMES", int(n), "number of frames searched")
    set_card(meta, "FRMROWS", int(ny), "rows per frame (RAWY range)")
    set_card(meta, "FRMCOLS", int(nx), "columns per frame (RAWX range)")
    set_card(meta, "NMASKED", int(cube.mask.sum()) if cube.mask is not None else 0,
             "masked or non-finite pixels (never in events)")
    if cube.filenames:
        for i, name in enumerate(cube.filenames[:99], start=1):
            set_card(meta, f"INFILE{i:02d}", str(name)[-68:], "input frame file")
    add_history(meta, f"find_events: event {evt:g} eV, split {spl:g} eV, "
                      f"{len(events)} events in {n} frames")
    return events
