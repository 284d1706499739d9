"""Thresholds that hold on the user's data: calibration on the observation itself.

How many X-rays a context filter loses depends on the observation itself:
with more tracks per frame, more celestial X-rays land near one by chance;
with more X-rays per frame, more neighbours surround each.  A probability
threshold (or SAC radius) fixed on one mix of rates loses more at higher
rates.  Two ways of measuring the loss on the observation are offered.

**Frame shift** (the default of ``--max-lost-xray``).  A celestial X-ray is
independent of the particle showers of the frame it lands in, so its
context (tracks, sibling islands) has the same distribution as the context
of *any* event position taken in *another* frame of the same observation.
For every event of the observation (or a random sample of them) the
filter's score is recomputed with the event placed into frame ``f + k``
(``k`` from :data:`SHIFTS`, cyclic within a chunk of frames):

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
a real X-ray).  The sample runs over the whole observation,
chunk by chunk; the threshold is the one whose shifted rejection is the
requested fraction, and it is applied to the scores of every event at the
end of the run (:func:`apply_threshold`).

**Injection** (``--calibration injection``).  Noise-free simulated X-ray
islands (the charge-cloud physics of `xcrfilter.simulate`, energies drawn
from the observation's own in-band events) are added to the first chunk of
frames at random positions, away from every active pixel of the frame (no
pile-up), one per frame and in several rounds; events are found, the filter
runs on the injected frames, and the threshold is the one that rejects the
requested fraction of the injected X-ray events.  It relies on the
simulator's X-ray shapes and on the first chunk being typical.

Either way the achieved fraction is reported with its 68 % binomial
(Wilson) interval.  Filters take part through their ``CALIBRATION``
attribute, a :class:`~xcrfilter.contract.Calibration`.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.stats import binom_conf_interval
from scipy import ndimage

__all__ = ["SHIFTS", "inject_xrays", "calibrate", "parse_fraction",
           "shifted_scores", "threshold_for", "apply_threshold", "MIN_REJECTED", "own_pixels",
           "covered", "write_calibration_cards"]

#: Frame offsets of the frame-shift sample.  They start at 3 so that charge
#: read out across a frame boundary (the frame after a hit) never serves as
#: "another frame"; a chunk of n frames uses the offsets below n.
SHIFTS = (3, 7, 17, 41)

#: The shifted sample must hold at least this many rejected events at the
#: asked fraction (relative precision about 1/sqrt(10), 30 %); fewer is an error.
MIN_REJECTED = 10

#: Shape filters: largest number of events placed into other frames over a
#: whole observation, and per frame (each costs one scored copy of a frame).
MAX_SHAPE_SAMPLE = 20000
MAX_SHAPE_PER_FRAME = 2


def parse_fraction(text):
    """Parse ``"2%"``, ``"0.02"`` or a number into a fraction in (0, 1).

    Raises
    ------
    ValueError
        If it is not a number, or not in (0, 1) (after the percent sign).
    """
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a fraction; write e.g. 2% or 0.02") from None
    if not 0 < value < 1:
        raise ValueError(f"lost X-ray fraction must be in (0, 1), got {text!r}")
    return value


def inject_xrays(data_ev, *, energies_ev=None, seed=0, detector=None,
                 split_threshold=80 * u.eV, stamp=16):
    """Add one simulated X-ray island to every frame of a copy of the frames.

    Parameters
    ----------
    data_ev : ndarray, shape (n_frames, ny, nx)
        Frames [eV]; not modified.
    energies_ev : ndarray, optional
        Energies [eV] to draw the injected photons from (with replacement);
        default log-uniform 0.3-10 keV.
    seed : int
        Random seed.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Charge-cloud physics (default WFI).
    split_threshold : `~astropy.units.Quantity` [energy]
        Pixels of the frames at or above it are active; an island whose
        charge (grown by one pixel) touches one is not injected.
    stamp : int
        Size [pixel] of the square stamp the island is simulated in.

    Returns
    -------
    injected : ndarray, shape (n_frames, ny, nx)
        The frames plus the X-ray charge [eV].
    charge : bool ndarray, shape (n_frames, ny, nx)
        True on pixels that carry injected charge.
    """
    from .simulate import FrameSimulator, SimulationParameters
    from .simulate.spectra import CallableSpectrum, LogUniformSpectrum
    data_ev = np.asarray(data_ev, np.float32)
    n, ny, nx = data_ev.shape
    if energies_ev is not None and len(energies_ev) >= 20:
        pool = np.asarray(energies_ev, float)
        spectrum = CallableSpectrum(lambda r, k: r.choice(pool, k), "observed events")
    else:
        spectrum = LogUniformSpectrum(0.3 * u.keV, 10 * u.keV)
    params = SimulationParameters(cr_rate=0.0, xray_rate=1.0, no_pileup=False)
    sim = FrameSimulator(detector, params, spectrum, shape=(stamp, stamp))
    rng = np.random.default_rng(seed)
    c0 = stamp // 2
    dep, _, _, _ = sim.simulate_block(rng, n, n_xray=np.ones(n, int), n_cr=np.zeros(n, int),
                                      xray_window=(c0 - 1, c0 + 1, c0 - 1, c0 + 1),
                                      noise=False)
    split = float(split_threshold.to_value(u.eV))
    mask = ndimage.binary_dilation(dep >= 0.25 * split, structure=np.ones((1, 3, 3), bool))
    y0 = rng.integers(0, ny - stamp + 1, n)
    x0 = rng.integers(0, nx - stamp + 1, n)
    fi = np.arange(n)[:, None, None]
    yy = y0[:, None, None] + np.arange(stamp)[None, :, None]
    xx = x0[:, None, None] + np.arange(stamp)[None, None, :]
    clash = ((data_ev[fi, yy, xx] >= split) & mask).any(axis=(1, 2))
    dep[clash] = 0
    out = data_ev.copy()
    out[fi, yy, xx] += dep
    charge = np.zeros(data_ev.shape, bool)
    charge[fi, yy, xx] = dep >= 1.0
    return out, charge


def calibrate(module, cube, common, options, max_lost, *, rounds=5, seed=0):
    """Choose a filter's threshold so that it loses ``max_lost`` of injected X-rays.

    Parameters
    ----------
    module : `~xcrfilter.contract.Filter`
        The filter's declaration; its ``CALIBRATION`` names the score column,
        the option and the sign, and ``run`` scores the injected events.
    cube : `~xcrfilter.io.frames.FrameCube`
        The frames to calibrate on (e.g. the first chunk of the observation).
    common : dict
        The pipeline's common keywords (thresholds, detector).
    options : dict
        The filter's other options (kept).
    max_lost : float
        Fraction of X-ray events the filter may reject, in (0, 1).
    rounds : int
        Injection rounds over ``cube`` (one X-ray per frame in each).
    seed : int
        Random seed.

    Returns
    -------
    options : dict
        ``options`` with the calibrated threshold or radius.
    report : dict
        ``value`` (the threshold or radius), ``achieved`` (fraction of the
        injected events rejected), ``lo``/``hi`` (its 68 % Wilson interval),
        ``n`` (injected events scored).

    Raises
    ------
    ValueError
        If fewer than 50 injected events could be placed (too few or too
        crowded frames).
    """
    from .events import find_events
    from .io.frames import FrameCube
    cal = module.CALIBRATION
    column, option, sign = cal.column, cal.option, cal.sign
    data = np.asarray(cube.data, np.float32)
    evt, spl = common["event_threshold"], common["split_threshold"]
    observed = find_events(cube, evt, spl, common["mip_threshold"])
    e_obs = observed["ENERGY"].to_value(u.eV)
    e_obs = e_obs[(e_obs >= 300) & (e_obs < 10000)]
    scores = []
    for r in range(int(rounds)):
        inj, charge = inject_xrays(data, energies_ev=e_obs, seed=seed + r,
                                   detector=common.get("detector"), split_threshold=spl)
        icube = FrameCube(inj, cube.mask, cube.header, cube.filenames, False)
        ev = find_events(icube, evt, spl, common["mip_threshold"])
        f, y, x = (np.asarray(ev[c], np.intp) for c in ("FRAME", "RAWY", "RAWX"))
        mine = charge[f, y, x]
        if not mine.any():
            continue
        out = module.run(icube, ev[mine], common, _scoring_options(options))
        scores.append(np.asarray(out[column], float))
    s = np.concatenate(scores) if scores else np.zeros(0)
    s = s[~np.isnan(s)]
    if s.size < 50:
        raise ValueError(f"calibration: only {s.size} injected X-ray events could be placed "
                         "and scored; give more frames (at least a few hundred)")
    limit = float(np.hypot(*data.shape[1:]))
    report = threshold_for(s, sign, max_lost, limit=limit)
    report.update(method="injection", n=int(s.size))
    return dict(options or {}, **{option: report["value"]}), report


def threshold_for(scores, sign, max_lost, *, limit=None):
    """The threshold that rejects at most ``max_lost`` of ``scores``.

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Scores of X-ray(-like) events, NaN-free (``inf`` allowed, e.g. no
        track in the frame).
    sign : {+1, -1}
        +1: ``score >= value`` is rejected; -1: ``score <= value`` is rejected.
    max_lost : float
        Fraction in (0, 1).
    limit : float, optional
        Largest value for ``sign == -1``: a radius beyond every finite
        distance rejects nothing more.  Default: the largest finite score.

    Returns
    -------
    dict
        ``value``, ``achieved`` (fraction of ``scores`` rejected at it),
        ``lo``/``hi`` (68 % Wilson interval of ``achieved``), ``target``.
    """
    # the score columns are float32: a value one float32 step beyond the
    # k-th score decides the same in float32 and float64
    s = np.asarray(scores, np.float32).astype(float)
    k = int(np.floor(max_lost * s.size))
    if sign > 0:   # reject score >= value
        top = np.sort(s)[::-1]
        value = float(np.nextafter(np.float32(top[k]), np.float32(np.inf))) if k < s.size \
            else 0.0
        value = min(value, 1.0)
        rejected = int(np.sum(s >= value))
    else:          # reject score <= value
        low = np.sort(s)
        value = float(np.nextafter(np.float32(low[k]), np.float32(-np.inf))) if k < s.size \
            else float(low[-1])
        if limit is None:
            finite = s[np.isfinite(s)]
            limit = float(finite.max()) if finite.size else 0.0
        value = min(max(value, 0.0), float(limit))
        rejected = int(np.sum(s <= value))
    lo, hi = binom_conf_interval(rejected, s.size, confidence_level=0.6827, interval="wilson")
    return dict(value=value, achieved=rejected / s.size, lo=float(lo), hi=float(hi),
                target=float(max_lost))


def shifted_scores(module, cube, events, common, options, *, rng, max_shape_events=None,
                   clean_radius=100.0, band=None):
    """Scores of a filter for the events of ``cube`` placed into other frames.

    Parameters
    ----------
    module : `~xcrfilter.contract.Filter`
        The filter's declaration: ``run`` scores the placed events, and
        ``CALIBRATION`` (a :class:`~xcrfilter.contract.Calibration`) names
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
        particle track (as SAC defines it) within this many pixels.
    band : `~astropy.units.Quantity`, optional
        Events of this energy band are placed (default 0.3-10 keV).

    Returns
    -------
    scores : ndarray, shape (m,)
        The filter's score of every placement (NaN-free).
    n_events : int
        Distinct events behind them.
    """
    from astropy.table import QTable

    from .units import DEFAULT_BAND, energy_values
    cal = module.CALIBRATION
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
    opts = _scoring_options(options)
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
        score = np.asarray(module.run(cube, placed, common, opts)[cal.column], float)
        good = ~np.isnan(score)  # inf: no track in the other frame, a valid score
        return score[good], int(np.unique(rows[good]).size)
    # shape filters: the event's own pixels pasted into another frame, one per copy;
    # events with another island in their 5 x 5 are left out (it is not theirs)
    from .filters.sac import find_tracks, track_distance
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
    from .io.frames import FrameCube
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
        out = module.run(sub, placed, common, opts)
        scores.append(np.asarray(out[cal.column], float))
    score = np.concatenate(scores)
    good = ~np.isnan(score)
    return score[good], int(np.unique(rows[good]).size)


def own_pixels(active, frame, y, x):
    """The pixels of each event's 5 x 5 that are its own, and whether others are there.

    Returns
    -------
    own : bool ndarray, shape (n, 5, 5)
        The central 3 x 3, and the active pixels of the 5 x 5 connected
        (8-connectivity) to the active pixels of the 3 x 3.
    foreign : bool ndarray, shape (n,)
        Some active pixel of the 5 x 5 is not connected: another island.
    """
    off = np.arange(-2, 3)
    patch = active[frame[:, None, None], y[:, None, None] + off[None, :, None],
                   x[:, None, None] + off[None, None, :]]
    island = np.zeros_like(patch)
    island[:, 1:4, 1:4] = patch[:, 1:4, 1:4]
    for _ in range(4):  # grow within the 5 x 5: every path of it is covered
        grown = np.pad(island, ((0, 0), (1, 1), (1, 1)))
        grown = np.any([grown[:, i:i + 5, j:j + 5] for i in range(3) for j in range(3)],
                       axis=0)
        island = grown & patch
    own = island.copy()
    own[:, 1:4, 1:4] = True
    return own, (patch & ~island).any(axis=(1, 2))


def covered(active, frame, y, x, own):
    """True where ``active[frame]`` has charge on the pixels ``own`` (5 x 5) would take.

    An X-ray landing there would pile up with that charge: not an event of
    its own, so such a placement is left out.
    """
    off = np.arange(-2, 3)
    there = active[frame[:, None, None], y[:, None, None] + off[None, :, None],
                   x[:, None, None] + off[None, None, :]]
    return (there & own).any(axis=(1, 2))


def _scoring_options(options):
    """A filter's options for scoring injected or placed events: nothing is written."""
    return {k: v for k, v in (options or {}).items() if k != "cam_output"}


def apply_threshold(events, module, value):
    """Set a filter's STATUS bit of every event from its score column at ``value``.

    The bit is cleared first; NaN scores (unscored events) never set it.  The
    filter's threshold keyword and rejected-event count are rewritten.
    ``events`` is modified in place.

    Returns
    -------
    int
        Events rejected.
    """
    from .events import set_status_bit
    from .meta import card_comment, set_card
    cal = module.CALIBRATION
    (bit, _), = module.STATUS.values()
    score = np.asarray(events[cal.column], float)
    ok = np.isfinite(score)
    rej = np.zeros(len(events), bool)
    rej[ok] = score[ok] <= value if cal.sign < 0 else score[ok] >= value
    set_status_bit(events, bit, rej)
    set_card(events.meta, cal.card, float(value), card_comment(events.meta, cal.card))
    if cal.count_card is not None:
        set_card(events.meta, cal.count_card, int(rej.sum()),
                 card_comment(events.meta, cal.count_card))
    return int(rej.sum())


def write_calibration_cards(meta, modules, calibrated):
    """Header keywords and HISTORY of every calibrated threshold.

    Parameters
    ----------
    meta : dict
        Event-table ``meta``, modified in place.
    modules : dict
        Filter name -> filter module (its ``CALIBRATION`` gives the prefix).
    calibrated : dict
        Filter name -> report of :func:`calibrate`, :func:`threshold_for`
        (frame shift) or a learning filter.
    """
    from .meta import add_history, set_card
    for name, rep in calibrated.items():
        cal = modules[name].CALIBRATION
        key = cal.prefix
        if rep["method"] == "none":
            # too short an observation for the default calibration
            set_card(meta, f"{key}CALM", "NONE", f"{name} calibration method")
            set_card(meta, f"{key}CALN", rep["n"], "events placed in other frames")
            add_history(meta, f"calibrate: {name} not calibrated: {rep['placements']} "
                              f"frame-shift placements of {rep['n']} events, "
                              f"{rep['need']} needed for {100 * rep['target']:.3g}%; "
                              "default threshold kept")
            continue
        what = "radius [pixel]" if cal.sign < 0 else "threshold"
        how = "frame shift" if rep["method"] == "shift" else "injection"
        sample = "events placed in other frames" if rep["method"] == "shift" else \
            "injected X-ray events scored"
        set_card(meta, f"{key}CALM", rep["method"].upper(), f"{name} calibration method")
        set_card(meta, f"{key}CALV", rep["value"], f"{name} {what} calibrated by {how}")
        set_card(meta, f"{key}CALF", rep["achieved"], f"{name}: X-ray loss estimate")
        set_card(meta, f"{key}CALLO", rep["lo"], "68% Wilson interval, lower")
        set_card(meta, f"{key}CALHI", rep["hi"], "68% Wilson interval, upper")
        set_card(meta, f"{key}CALN", rep["n"], sample)
        if rep["method"] == "shift":
            set_card(meta, f"{key}CALS", rep["shifts"], "frame shifts of the sample")
            set_card(meta, f"{key}CALX", rep["excess"],
                     "rejected in own frame minus shifted (0.3-10 keV)")
            add_history(meta, f"calibrate: {name} {what} {rep['value']:.4g} by frame shift "
                              f"(shifts {rep['shifts']}): {rep['n']} events in "
                              f"{rep['placements']} placements, estimated X-ray loss "
                              f"{100 * rep['achieved']:.2f}% (68%: {100 * rep['lo']:.2f}-"
                              f"{100 * rep['hi']:.2f}%, asked {100 * rep['target']:.2f}%); "
                              f"{rep['rejected']} events rejected; in their own frames "
                              f"{100 * rep['own']:.2f}% of the 0.3-10 keV events, "
                              f"{100 * rep['excess']:.2f} points above the shifted rate "
                              "(events correlated with the frame's charge)")
        else:
            add_history(meta, f"calibrate: {name} {what} {rep['value']:.4g} rejects "
                              f"{100 * rep['achieved']:.2f}% of {rep['n']} injected X-ray "
                              f"events (asked {100 * rep['target']:.2f}%)")
