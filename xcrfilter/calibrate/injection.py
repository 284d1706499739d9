"""Calibration by injection: simulated X-rays added to the observation's frames.

Noise-free simulated X-ray islands (the charge-cloud physics of
`xcrfilter.simulate`, energies drawn from the observation's own in-band
events) are added to the first chunk of frames at random positions, away
from every active pixel of the frame (no pile-up), one per frame and in
several rounds (:func:`inject_xrays`); events are found, the filter runs on
the injected frames, and the threshold is the one that rejects the
requested fraction of the injected X-ray events (:func:`calibrate`, with
:func:`xcrfilter.calibrate.threshold_for`).  It relies on the simulator's
X-ray shapes and on the first chunk being typical; ``--calibration
injection`` of the command line, ``calibration="injection"`` of
:func:`xcrfilter.pipeline.run_pipeline`.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from scipy import ndimage

from ..events import find_events
from ..io.frames import FrameCube
from . import scoring_options, threshold_for

__all__ = ["inject_xrays", "calibrate"]


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
    from ..simulate import FrameSimulator, SimulationParameters
    from ..simulate.spectra import CallableSpectrum, LogUniformSpectrum
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


def calibrate(spec, cube, common, options, max_lost, *, rounds=5, seed=0):
    """Choose a filter's threshold so that it loses ``max_lost`` of injected X-rays.

    Parameters
    ----------
    spec : `~xcrfilter.contract.Filter`
        The filter's declaration; its ``calibration`` names the score column,
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
    cal = spec.calibration
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
        out = spec.run(icube, ev[mine], common, scoring_options(options))
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
