"""Calibration by frame shift: the observation's own events placed into other frames.

A celestial X-ray is independent of the particle showers of the frame it
lands in, so its context (tracks, sibling islands) has the same distribution
as the context of *any* event position taken in *another* frame of the same
observation.  For every event of the observation (or a random sample of
them) the filter's score is recomputed with the event placed into frame
``f + k`` (``k`` from :data:`xcrfilter.calibrate.SHIFTS`, cyclic within a
chunk of frames; :func:`shifted_scores`):

* a filter that looks at the context only (SAC, ``Calibration.uses_shape``
  False) scores the event's position against the other frame's charge;
* a filter that also looks at the event's own pixels (CAM, morph) scores
  the event's own pixels (its 3 x 3 and the active pixels of its 5 x 5
  connected to them) pasted into the other frame, one event per copied
  frame.  The events are taken only where their own frame has no particle
  track within ``clean_radius`` pixels and no other island in their 5 x 5,
  so that the sample is almost free of shower secondaries, whose shape
  alone may look like a cosmic ray: the shape of a celestial X-ray does
  not depend on where it lands, so selecting on its own frame does not
  change the X-ray shapes in the sample.

Where the other frame has charge on the event's own pixels, an X-ray
landing there would have piled up with it and not be an event of its own:
that placement is left out (charge next to them stays, as it would around
a real X-ray).  The sample runs over the whole observation, chunk by chunk
(:mod:`xcrfilter.execution`); the threshold is the one whose shifted
rejection is the requested fraction, and it is applied to the scores of
every event at the end of the run (:func:`apply_shift_calibration`).
"""
from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning

from ..io.frames import FrameCube
from ..units import DEFAULT_BAND, energy_values
from . import (CLEAN_RADIUS, MIN_REJECTED, SHIFTS, apply_threshold, covered, own_pixels,
               scoring_options, threshold_for)

__all__ = ["MAX_SHAPE_SAMPLE", "MAX_SHAPE_PER_FRAME", "shifted_scores",
           "apply_shift_calibration", "own_frame_rejection"]

#: Shape filters: largest number of events placed into other frames over a
#: whole observation, and per frame (each costs one scored copy of a frame).
MAX_SHAPE_SAMPLE = 20000
MAX_SHAPE_PER_FRAME = 2


def shifted_scores(spec, cube, events, common, options, *, rng, max_shape_events=None,
                   clean_radius=CLEAN_RADIUS, band=None):
    """Scores of a filter for the events of ``cube`` placed into other frames.

    Parameters
    ----------
    spec : `~xcrfilter.contract.Filter`
        The filter's declaration: ``run`` scores the placed events, and
        ``calibration`` (a :class:`~xcrfilter.contract.Calibration`) names
        the score column and whether it looks at the event's own pixels.
    cube : `~xcrfilter.io.frames.FrameCube`
        Frames [eV] of one chunk (at least 2 frames give a sample).
    events : `~astropy.table.Table`
        The events found in ``cube`` (``FRAME`` counting from 0 in ``cube``).
    common, options : dict
        The pipeline's shared keywords and the filter's options.
    rng : `numpy.random.Generator`
        Chooses the shift of each placed event and the sample of a shape filter.
    max_shape_events : int, optional
        Largest number of events a shape filter places (default
        :data:`MAX_SHAPE_PER_FRAME` per frame).
    clean_radius : float
        Shape filters: events are taken only where their own frame has no
        particle track (as SAC defines it) within this many pixels
        (default `xcrfilter.calibrate.CLEAN_RADIUS`).
    band : `~astropy.units.Quantity`, optional
        Events of this energy band are placed (default 0.3-10 keV).

    Returns
    -------
    scores : ndarray, shape (m,)
        The filter's score of every placement (NaN-free).
    n_events : int
        Distinct events behind them.
    """
    cal = spec.calibration
    data = np.asarray(cube.data, np.float32)
    n, ny, nx = data.shape
    shifts = np.array([k for k in SHIFTS if k < n], np.intp)
    if shifts.size == 0 or len(events) == 0:
        return np.zeros(0), 0
    lo, hi = (DEFAULT_BAND if band is None else band).to_value(u.eV)
    split = float(common["split_threshold"].to_value(u.eV))
    energy = energy_values(events["ENERGY"], u.eV)
    f = np.asarray(events["FRAME"], np.intp)
    y = np.asarray(events["RAWY"], np.intp)
    x = np.asarray(events["RAWX"], np.intp)
    inner = (y >= 2) & (y < ny - 2) & (x >= 2) & (x < nx - 2)
    take = np.flatnonzero((energy >= lo) & (energy < hi) & inner)
    if take.size == 0:
        return np.zeros(0), 0
    active = data >= split
    # the event's own pixels: its 3 x 3, and the active pixels of its 5 x 5
    # connected to them (its island, as far as the 5 x 5 shows it)
    own, foreign = own_pixels(active, f[take], y[take], x[take])
    opts = scoring_options(options)
    if not cal.uses_shape:
        # every event at every shift: its position against the other frame's charge
        rows = np.repeat(np.arange(take.size), shifts.size)
        g = (f[take][rows] + np.tile(shifts, take.size)) % n
        ok = ~covered(active, g, y[take][rows], x[take][rows], own[rows])
        rows, g = rows[ok], g[ok]
        if rows.size == 0:
            return np.zeros(0), 0
        placed = QTable(events[take[rows]], copy=True)
        placed["FRAME"] = g.astype(np.int32)
        score = np.asarray(spec.run(cube, placed, common, opts)[cal.column], float)
        good = ~np.isnan(score)  # inf: no track in the other frame, a valid score
        return score[good], int(np.unique(rows[good]).size)
    # shape filters: the event's own pixels pasted into another frame, one per copy;
    # events with another island in their 5 x 5 are left out (it is not theirs)
    from ..filters.sac import find_tracks, track_distance
    keep = ~foreign
    tracks, _ = find_tracks(cube, split_threshold=common["split_threshold"],
                            track_energy=common["mip_threshold"])
    keep &= track_distance(tracks, f[take], y[take], x[take]) > float(clean_radius)
    rows = np.flatnonzero(keep)
    cap = MAX_SHAPE_PER_FRAME * n if max_shape_events is None else int(max_shape_events)
    if rows.size > cap:
        rows = np.sort(rng.choice(rows, cap, replace=False))
    if rows.size == 0:
        return np.zeros(0), 0
    # each event at up to len(shifts) distinct shifts, within the placement cap
    reps = int(max(1, min(shifts.size, cap // rows.size)))
    k = np.array([rng.permutation(shifts)[:reps] for _ in range(rows.size)]).ravel()
    rows = np.repeat(rows, reps)
    g = (f[take][rows] + k) % n
    ok = ~covered(active, g, y[take][rows], x[take][rows], own[rows])
    rows, g = rows[ok], g[ok]
    scores = []
    step = 32
    off = np.arange(-2, 3)
    for s0 in range(0, rows.size, step):
        r, gg = rows[s0:s0 + step], g[s0:s0 + step]
        t = take[r]
        copies = data[gg].copy()
        m = np.arange(t.size)[:, None, None]
        yy = y[t][:, None, None] + off[None, :, None]
        xx = x[t][:, None, None] + off[None, None, :]
        copies[m, yy, xx] = np.where(own[r], data[f[t][:, None, None], yy, xx],
                                     copies[m, yy, xx])
        placed = QTable(events[t], copy=True)
        placed["FRAME"] = np.arange(t.size, dtype=np.int32)
        sub = FrameCube(copies, None, cube.header, cube.filenames, False)
        out = spec.run(sub, placed, common, opts)
        scores.append(np.asarray(out[cal.column], float))
    score = np.concatenate(scores)
    good = ~np.isnan(score)
    return score[good], int(np.unique(rows[good]).size)


def apply_shift_calibration(out, specs, shifted, max_lost, calibrated, fallback=False):
    """Choose each filter's threshold from its frame-shift sample and apply it to ``out``.

    The threshold rejects ``max_lost`` of the shifted sample
    (:func:`xcrfilter.calibrate.threshold_for`) and is applied to the scores
    of every event (:func:`xcrfilter.calibrate.apply_threshold`); the report
    also gives what the same cut rejects in the events' own frames
    (:func:`own_frame_rejection`).  A sample holding fewer than
    :data:`xcrfilter.calibrate.MIN_REJECTED` rejected events is a
    `ValueError`, or with ``fallback`` the filter keeps the threshold it ran
    with (a warning, a HISTORY line, ``method='none'`` in its report).

    Parameters
    ----------
    out : `~astropy.table.QTable`
        Every event of the run, with the filters' score columns; their
        STATUS bits and threshold keywords are rewritten in place.
    specs : dict
        Filter name -> :class:`~xcrfilter.contract.Filter` calibrated by frame shift.
    shifted : dict
        Filter name -> list of ``(scores, n_events)`` of :func:`shifted_scores`,
        one a piece of frames.
    max_lost : float
        Fraction of X-ray events each filter may reject, in (0, 1).
    calibrated : dict
        Filter name -> report, filled in place (the reports
        :func:`xcrfilter.calibrate.write_calibration_cards` writes).
    fallback : bool
        Keep the threshold of a filter whose sample is too small instead of
        raising.
    """
    for name, spec in specs.items():
        payloads = shifted.get(name, [])
        scores = np.concatenate([p[0] for p in payloads]) if payloads else np.zeros(0)
        used = int(sum(p[1] for p in payloads))
        if scores.size * max_lost < MIN_REJECTED:
            need = int(np.ceil(MIN_REJECTED / max_lost))
            msg = (f"max_lost_xray: the frame-shift sample of {name} holds {scores.size} "
                   f"placements of {used} events; estimating a loss of {100 * max_lost:.3g}% "
                   f"needs at least {need} (at least {MIN_REJECTED} rejected)")
            if not fallback:
                raise ValueError(msg + ": give more frames, ask a larger fraction, or "
                                 "calibrate by injection")
            warnings.warn(msg + f"; {name} keeps its default threshold (give more frames to "
                          "calibrate it on the observation)", AstropyUserWarning, stacklevel=3)
            calibrated[name] = dict(method="none", target=float(max_lost), n=int(used),
                                    placements=int(scores.size), need=need)
            continue
        column = np.asarray(out[spec.calibration.column], float)
        finite = np.concatenate([scores[np.isfinite(scores)], column[np.isfinite(column)]])
        limit = float(finite.max()) if finite.size else 0.0
        rep = threshold_for(scores, spec.calibration.sign, max_lost, limit=limit)
        rep.update(method="shift", n=int(used), placements=int(scores.size),
                   shifts=",".join(str(k) for k in SHIFTS))
        rep["rejected"] = apply_threshold(out, spec, rep["value"])
        # the same cut on the events in their own frames: what it rejects
        # beyond the shifted (chance) rate is correlated with the frame's
        # charge, i.e. particle-shower events
        own = own_frame_rejection(out, spec)
        rep["own"] = own
        rep["excess"] = own - rep["achieved"]
        calibrated[name] = rep


def own_frame_rejection(events, spec):
    """Fraction of the 0.3-10 keV events whose own-frame score the filter rejects.

    ``events`` carry the final STATUS bit of filter ``spec``; events it did
    not score (NaN) are left out.  Above the shifted rate, the excess is
    events correlated with the frame's charge (shower secondaries).
    """
    e = energy_values(events["ENERGY"], u.eV)
    lo, hi = DEFAULT_BAND.to_value(u.eV)
    score = np.asarray(events[spec.calibration.column], float)
    sel = (e >= lo) & (e < hi) & ~np.isnan(score)
    (bit, _), = spec.status.values()
    rej = (np.asarray(events["STATUS"]).astype(np.int64) >> bit) & 1
    return float(rej[sel].mean()) if sel.any() else 0.0
