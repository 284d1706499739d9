"""Whole-frame context of every event: particle tracks, sibling islands, own shape.

A cosmic-ray shower leaves more than one island in a frame: the primary's
track (when it crosses the sensor) and secondaries scattered tens of pixels
around it, mostly along the primary's projected axis.  A celestial X-ray is
alone: its neighbours are other X-rays, uncorrelated with tracks.  The
very-faint-mode filter sees a 5 x 5 window, the seed paper's network a
64 x 64 window; self-anti-coincidence (SAC) sees the whole frame but only
the distance to the nearest track.  :func:`context_features` describes every
event by the whole frame, computed once per frame and vectorised over a
chunk of frames:

* the distance to the nearest track pixel (SAC's quantity) and that
  track's energy, length and orientation;
* the event's offsets along and across the track's major axis and from its
  nearer end point;
* counts and summed energy of the *other* islands (those holding at least
  one pixel at or above the event threshold) within several radii and in
  the whole frame, and the number of tracks in the frame;
* the event's own island shape variables (seed 002 of the method papers:
  the shape variables of track classifiers): active pixels and summed
  energy in the 5 x 5 window, the largest-pixel fraction of the 3 x 3
  energy, the grade, and the size and energy of its whole island.

Definitions (the same as `xcrfilter.filters.sac`): an *active* pixel has
energy >= the split threshold; an *island* is an 8-connected set of active
pixels inside one frame; a *track* is an island with summed energy >= the
MIP threshold or >= ``track_size`` pixels.  Track geometry comes from the
unweighted second moments of its pixel coordinates: the orientation of the
major axis, and the length as the extent of the pixels projected on it
(plus one pixel).

Distances are in pixels between pixel centres; energies in eV.  Where a
frame has no track the track features are ``NO_TRACK_DISTANCE`` (distance,
offsets) and 0 (energy, length, orientation), so that a tree model can
split on them.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .events import event_positions
from .meta import set_card
from .units import as_energy, energy_values

__all__ = ["context_features", "context_kwargs", "CONTEXT_FEATURES", "MODEL_FEATURES",
           "NO_TRACK_DISTANCE", "DEFAULT_RADII", "feature_matrix"]

#: Distance [pixel] given to events in a frame without a track (larger than
#: any distance inside a 2048 x 2048 frame).
NO_TRACK_DISTANCE = 4096.0

#: Radii [pixel] of the sibling-island counts.
DEFAULT_RADII = (16, 32, 64, 128)

_INNER = np.array([6, 7, 8, 11, 12, 13, 16, 17, 18])  # 3x3 inside the row-major 5x5


def _names(radii):
    names = {
        "N5X5": (u.dimensionless_unscaled, "active pixels in the 5x5 window"),
        "E5X5": (u.eV, "summed energy of the active pixels of the 5x5 window"),
        "PMAX_FRAC": (u.dimensionless_unscaled,
                      "largest pixel / summed active energy of the 3x3 window"),
        "ISL_NPIX": (u.pix, "pixels of the event's own island"),
        "ISL_E": (u.eV, "summed energy of the event's own island"),
        "IN_TRACK": (u.dimensionless_unscaled, "1 when the event's own island is a track"),
        "TRK_DIST": (u.pix, "distance to the nearest track pixel of the frame"),
        "TRK_E": (u.eV, "summed energy of that track"),
        "TRK_LEN": (u.pix, "length of that track along its major axis"),
        "TRK_ANG": (u.deg, "orientation of that track's major axis, from +RAWX"),
        "TRK_ALONG": (u.pix, "|offset| of the event from the track centroid along its axis"),
        "TRK_ACROSS": (u.pix, "|offset| of the event from the track axis"),
        "TRK_END": (u.pix, "distance of the event from the track's nearer end point"),
        "N_TRK_FRAME": (u.dimensionless_unscaled, "tracks in the frame"),
        "E_TRK_FRAME": (u.eV, "summed energy of the tracks of the frame"),
    }
    for r in radii:
        names[f"N_ISL_{r}"] = (u.dimensionless_unscaled,
                               f"other islands with centroid within {r} px")
        names[f"E_ISL_{r}"] = (u.eV, f"summed energy of the other islands within {r} px")
    names["N_ISL_FRAME"] = (u.dimensionless_unscaled, "other islands in the frame")
    names["E_ISL_FRAME"] = (u.eV, "summed energy of the other islands in the frame")
    return names


#: Column name -> (unit, definition) of :func:`context_features` (default radii).
CONTEXT_FEATURES = _names(DEFAULT_RADII)

#: Features a classifier should use.  ``TRK_ANG`` is left out: the sky and
#: the detector have no preferred direction for cosmic rays, so a model can
#: only learn noise from it.
MODEL_FEATURES = ("ENERGY",) + tuple(k for k in CONTEXT_FEATURES if k != "TRK_ANG") + \
    ("GRADE",)

#: The event's own shape, nothing of the rest of its frame: what a shape-only
#: model (the ``shape`` option of ``obsctx``) may use.
SHAPE_FEATURES = ("ENERGY", "GRADE", "N5X5", "E5X5", "PMAX_FRAC", "ISL_NPIX", "ISL_E")


def context_kwargs(spec=None):
    """Keyword arguments of :func:`context_features` from a model's ``context`` record.

    ``spec`` is the ``"context"`` dict of a model's ``model.json``
    (``split_threshold_ev``, ``event_threshold_ev``, ``track_energy_ev``,
    ``track_size``, ``radii``); missing entries take the defaults of
    :func:`context_features`.
    """
    spec = spec or {}
    return dict(split_threshold=float(spec.get("split_threshold_ev", 80.0)) * u.eV,
                event_threshold=float(spec.get("event_threshold_ev", 260.0)) * u.eV,
                track_energy=float(spec.get("track_energy_ev", 10000.0)) * u.eV,
                track_size=int(spec.get("track_size", 10)),
                radii=tuple(int(r) for r in spec.get("radii", DEFAULT_RADII)))


def context_features(frames, events, *, split_threshold=80 * u.eV,
                     event_threshold=260 * u.eV, track_energy=10 * u.keV, track_size=10,
                     radii=DEFAULT_RADII):
    """Whole-frame context and shape features of every event.

    Parameters
    ----------
    frames : ndarray, shape (n_frames, ny, nx) or (ny, nx), or `~astropy.units.Quantity`
        Pixel energies; a plain array is taken as eV.  Masked pixels must
        already be zero (as `xcrfilter.find_events` leaves them).
    events : `~astropy.table.Table`
        Events of these frames with ``FRAME`` (index into ``frames``),
        ``RAWX``, ``RAWY``, ``ENERGY`` [eV], ``PHAS`` (n, 25) [eV, row-major
        5 x 5, centre at index 12] and ``GRADE``, as made by
        `xcrfilter.find_events`.
    split_threshold : `~astropy.units.Quantity` [energy]
        Active-pixel threshold.  Default 80 eV.
    event_threshold : `~astropy.units.Quantity` [energy]
        An island counts as a sibling only when one of its pixels reaches
        it (pure noise islands are ignored).  Default 260 eV.
    track_energy : `~astropy.units.Quantity` [energy]
        Islands with summed energy >= this are tracks.  Default 10 keV.
    track_size : int
        Islands with >= this many pixels are tracks.  Default 10.
    radii : sequence of int
        Radii [pixel] of the sibling counts.  Default (16, 32, 64, 128).

    Returns
    -------
    `~astropy.table.QTable`
        One row per event, in the order of ``events``, with the columns of
        `CONTEXT_FEATURES` (units and definitions there, and in the module
        docstring; ``N_ISL_<r>`` and ``E_ISL_<r>`` for every radius).

    Raises
    ------
    ValueError
        If ``frames`` is not 2-D or 3-D, an event lies outside it, a
        threshold is not positive, or ``track_size`` / a radius is < 1.
    KeyError
        If ``events`` lacks a required column (named in the message).
    """
    if isinstance(frames, u.Quantity):
        frames = frames.to_value(u.eV)
    data = np.asarray(frames, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"frames must be 2-D or 3-D, got shape {data.shape}")
    split = as_energy(split_threshold, "split_threshold")
    evt_thr = as_energy(event_threshold, "event_threshold")
    emin = as_energy(track_energy, "track_energy")
    size_min = int(track_size)
    radii = tuple(int(r) for r in radii)
    if size_min < 1 or any(r < 1 for r in radii):
        raise ValueError("track_size and every radius must be >= 1 pixel")
    for col in ("FRAME", "RAWX", "RAWY", "ENERGY", "PHAS", "GRADE"):
        if col not in events.colnames:
            raise KeyError(f"events have no {col!r} column (needed for context features)")
    n_ev = len(events)
    nf, ny, nx = data.shape
    f, y, x = event_positions(events, data.shape)

    out = QTable()
    names = _names(radii)
    cols = {k: np.zeros(n_ev, np.float64) for k in names}

    # ---- own shape (from the 5x5 window) -------------------------------
    phas = energy_values(events["PHAS"]).reshape(n_ev, 25)
    act = phas >= split
    cols["N5X5"][:] = act.sum(axis=1)
    cols["E5X5"][:] = np.where(act, phas, 0).sum(axis=1)
    inner = np.where(act[:, _INNER], phas[:, _INNER], 0)
    s3 = inner.sum(axis=1)
    cols["PMAX_FRAC"][:] = np.divide(inner.max(axis=1, initial=0), s3,
                                     out=np.zeros(n_ev), where=s3 > 0)

    # ---- islands --------------------------------------------------------
    idx, lab, n_isl = label_islands(data, split)
    e_pix = data.ravel()[idx].astype(np.float64)
    frame_pix = idx // (ny * nx)
    rem = idx % (ny * nx)
    yp = (rem // nx).astype(np.float64)
    xp = (rem % nx).astype(np.float64)
    m = n_isl + 1
    npix = np.bincount(lab, minlength=m).astype(np.float64)
    energy = np.bincount(lab, weights=e_pix, minlength=m)
    emax = np.zeros(m)
    np.maximum.at(emax, lab, e_pix)
    frame_of = np.zeros(m, np.intp)
    frame_of[lab] = frame_pix
    safe = np.maximum(npix, 1)
    cx = np.bincount(lab, weights=xp, minlength=m) / safe
    cy = np.bincount(lab, weights=yp, minlength=m) / safe
    is_track = (energy >= emin) | (npix >= size_min)
    is_track[0] = False
    is_sib = (emax >= evt_thr) | is_track
    is_sib[0] = False

    if n_ev:
        pos = np.searchsorted(idx, (f * ny + y) * nx + x)
        pos = np.minimum(pos, max(idx.size - 1, 0))
        hit = idx.size > 0
        own = np.where(hit & (idx[pos] == (f * ny + y) * nx + x), lab[pos] if hit else 0, 0)
    else:
        own = np.zeros(0, np.intp)
    cols["ISL_NPIX"][:] = npix[own]
    cols["ISL_E"][:] = energy[own]
    cols["IN_TRACK"][:] = is_track[own]

    # ---- tracks: geometry and nearest track ----------------------------
    trk_pix = is_track[lab]
    t_ids = np.flatnonzero(is_track)
    ang = np.zeros(m)
    amin = np.zeros(m)
    amax = np.zeros(m)
    if t_ids.size:
        tl = lab[trk_pix]
        dx = xp[trk_pix] - cx[tl]
        dy = yp[trk_pix] - cy[tl]
        sxx = np.bincount(tl, weights=dx * dx, minlength=m)
        syy = np.bincount(tl, weights=dy * dy, minlength=m)
        sxy = np.bincount(tl, weights=dx * dy, minlength=m)
        ang = 0.5 * np.arctan2(2 * sxy, sxx - syy)
        along = dx * np.cos(ang[tl]) + dy * np.sin(ang[tl])
        amin = np.full(m, np.inf)
        amax = np.full(m, -np.inf)
        np.minimum.at(amin, tl, along)
        np.maximum.at(amax, tl, along)
        amin[~np.isfinite(amin)] = 0
        amax[~np.isfinite(amax)] = 0
    cols["N_TRK_FRAME"][:] = np.bincount(frame_of[t_ids], minlength=nf)[f]
    cols["E_TRK_FRAME"][:] = np.bincount(frame_of[t_ids], weights=energy[t_ids],
                                         minlength=nf)[f]

    far = NO_TRACK_DISTANCE
    for k in ("TRK_DIST", "TRK_ALONG", "TRK_ACROSS", "TRK_END"):
        cols[k][:] = far
    if n_ev and t_ids.size:
        gap = 4.0 * (ny + nx) + 2 * far
        from scipy.spatial import cKDTree  # 0.26 s: imported with the first frame's context
        tree = cKDTree(np.column_stack([frame_pix[trk_pix] * gap, yp[trk_pix], xp[trk_pix]]))
        d, j = tree.query(np.column_stack([f * gap, y, x]).astype(float),
                          distance_upper_bound=gap / 2)
        has = np.isfinite(d)
        tid = lab[trk_pix][j[has]]
        cols["TRK_DIST"][has] = d[has]
        cols["TRK_E"][has] = energy[tid]
        cols["TRK_LEN"][has] = amax[tid] - amin[tid] + 1.0
        cols["TRK_ANG"][has] = np.degrees(ang[tid])
        ex = x[has] - cx[tid]
        ey = y[has] - cy[tid]
        c, s = np.cos(ang[tid]), np.sin(ang[tid])
        a = ex * c + ey * s
        b = -ex * s + ey * c
        cols["TRK_ALONG"][has] = np.abs(a)
        cols["TRK_ACROSS"][has] = np.abs(b)
        da = np.minimum(np.abs(a - amin[tid]), np.abs(a - amax[tid]))
        cols["TRK_END"][has] = np.hypot(da, b)

    # ---- sibling islands -------------------------------------------------
    sib = np.flatnonzero(is_sib)
    own_sib = is_sib[own]
    tot_n = np.bincount(frame_of[sib], minlength=nf).astype(np.float64)
    tot_e = np.bincount(frame_of[sib], weights=energy[sib], minlength=nf)
    cols["N_ISL_FRAME"][:] = tot_n[f] - own_sib
    cols["E_ISL_FRAME"][:] = tot_e[f] - np.where(own_sib, energy[own], 0)
    if n_ev and sib.size:
        rmax = max(radii)
        gap = 4.0 * (ny + nx) + 2 * rmax
        from scipy.spatial import cKDTree
        tree = cKDTree(np.column_stack([frame_of[sib] * gap, cy[sib], cx[sib]]))
        qtree = cKDTree(np.column_stack([f * gap, y, x]).astype(float))
        pairs = qtree.sparse_distance_matrix(tree, rmax, output_type="ndarray")
        ei, sj, dist = pairs["i"], pairs["j"], pairs["v"]
        keep = sib[sj] != own[ei]  # the event's own island is not its sibling
        ei, sj, dist = ei[keep], sj[keep], dist[keep]
        for r in radii:
            w = dist <= r
            cols[f"N_ISL_{r}"][:] = np.bincount(ei[w], minlength=n_ev)
            cols[f"E_ISL_{r}"][:] = np.bincount(ei[w], weights=energy[sib[sj[w]]],
                                                minlength=n_ev)

    for k, (unit, doc) in names.items():
        out[k] = cols[k].astype(np.float32) * unit if unit != u.dimensionless_unscaled \
            else cols[k].astype(np.float32)
        out[k].info.description = doc
    set_card(out.meta, "CTXSPLIT", split, "[eV] split threshold of the context features")
    set_card(out.meta, "CTXEVTHR", evt_thr, "[eV] min pixel of a sibling island")
    set_card(out.meta, "CTXTRKE", emin, "[eV] track energy threshold")
    set_card(out.meta, "CTXTRKN", size_min, "[pixel] track size threshold")
    return out


def label_islands(data, split):
    """8-connected islands of active pixels inside each frame, on the active pixels only.

    Returns the sorted flat indices of the active pixels, their island label
    (1..n) and n.  Equivalent to ``scipy.ndimage.label`` with a structure
    that never links two frames, at a cost proportional to the number of
    active pixels instead of the whole cube.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    nf, ny, nx = data.shape
    idx = np.flatnonzero(data >= split)
    m = idx.size
    if m == 0:
        return idx, np.zeros(0, np.intp), 0
    col = idx % nx
    row = (idx // nx) % ny
    a, b = [], []
    # forward neighbours: right, and the three below (same frame)
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        ok = (col + dx >= 0) & (col + dx < nx) & (row + dy < ny)
        src = np.flatnonzero(ok)
        tgt = idx[src] + dy * nx + dx
        pos = np.searchsorted(idx, tgt)
        pos = np.minimum(pos, m - 1)
        found = idx[pos] == tgt
        a.append(src[found])
        b.append(pos[found])
    a = np.concatenate(a)
    b = np.concatenate(b)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(m, m))
    n, comp = connected_components(graph, directed=False)
    return idx, comp.astype(np.intp) + 1, int(n)


def feature_matrix(events, context, names=MODEL_FEATURES):
    """Stack the model features of ``events`` and their ``context`` into a matrix.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with ``ENERGY`` [eV] and ``GRADE``.
    context : `~astropy.table.Table`
        The output of :func:`context_features` for the same events.
    names : sequence of str
        Feature names, looked up first in ``context`` then in ``events``.

    Returns
    -------
    float32 ndarray, shape (n_events, len(names))
        Energies in eV, distances in pixels, counts as numbers.

    Raises
    ------
    KeyError
        If a feature is in neither table.
    """
    cols = []
    for name in names:
        table = context if name in context.colnames else events
        if name not in table.colnames:
            raise KeyError(f"feature {name!r} is in neither the events nor the context table")
        cols.append(energy_values(table[name]) if name in ("ENERGY",) else
                    np.asarray(u.Quantity(table[name]).value, np.float64))
    if not cols:
        return np.zeros((len(events), 0), np.float32)
    return np.column_stack(cols).astype(np.float32)
