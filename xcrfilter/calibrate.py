"""Thresholds that hold on the user's data: calibration by X-ray injection.

How many X-rays a context filter loses depends on the observation itself:
with more tracks per frame, more celestial X-rays land near one by chance;
with more X-rays per frame, more neighbours surround each.  A probability
threshold (or SAC radius) fixed on one mix of rates loses more at higher
rates.  Instead of trusting a fixed number, :func:`calibrate` measures the
loss on the observation:

1. noise-free simulated X-ray islands (the charge-cloud physics of
   `xcrfilter.simulate`, energies drawn from the observation's own in-band
   events) are added to the user's frames at random positions, away from
   every active pixel of the frame (no pile-up), one per frame and in
   several rounds so that the context of the frame barely changes;
2. events are found and the filter runs on the injected frames;
3. the threshold (radius for SAC) is the one that rejects the requested
   fraction of the injected X-ray events, and the achieved fraction is
   reported with its 68 % binomial (Wilson) interval.

Filters take part through their ``CALIBRATION`` attribute: the name of the
score column, the option it sets, and whether large scores are rejected
(``+1``, probabilities) or small ones (``-1``, SAC distances).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.stats import binom_conf_interval
from scipy import ndimage

__all__ = ["inject_xrays", "calibrate", "parse_fraction"]


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
    module : module
        A filter plug-in with ``pipeline_step`` and ``CALIBRATION = (column,
        option, sign)``.
    cube : `~xcrfilter.io.FrameCube`
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
    from .io import FrameCube
    column, option, sign = module.CALIBRATION
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
        kw = {k: v for k, v in common.items()}
        kw.update(options or {})
        kw.pop("cam_output", None)  # injected frames are scored, never written
        out = module.pipeline_step(icube, ev[mine], **kw)
        scores.append(np.asarray(out[column], float))
    s = np.concatenate(scores) if scores else np.zeros(0)
    s = s[~np.isnan(s)]
    if s.size < 50:
        raise ValueError(f"calibration: only {s.size} injected X-ray events could be placed "
                         "and scored; give more frames (at least a few hundred)")
    k = int(np.floor(max_lost * s.size))
    if sign > 0:   # reject score >= value
        top = np.sort(s)[::-1]
        value = float(np.nextafter(top[k], np.inf)) if k < s.size else 0.0
        value = min(value, 1.0)
        rejected = int(np.sum(s >= value))
    else:          # reject score <= value
        low = np.sort(s)
        value = float(np.nextafter(low[k], -np.inf)) if k < s.size else float(low[-1])
        value = min(max(value, 0.0), float(np.hypot(*data.shape[1:])))
        rejected = int(np.sum(s <= value))
    lo, hi = binom_conf_interval(rejected, s.size, confidence_level=0.6827, interval="wilson")
    report = dict(value=value, achieved=rejected / s.size, lo=float(lo), hi=float(hi),
                  n=int(s.size), target=float(max_lost))
    return dict(options or {}, **{option: value}), report
