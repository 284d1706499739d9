"""Reuse across windows: one fully convolutional pass over overlapping windows?

The CAM filter runs the network on one 64 x 64 window per scored event.
Where a frame's windows overlap, one pass over the bounding box of each
group of overlapping windows could replace them.  This measures, on
simulated 512 x 512 frames at a given X-ray rate (as
``benchmarks/bench_pipeline.py`` makes them):

- how many windows the network gets per frame, with the cascade off (every
  in-band event) and on (the events in the cascade band), and the area of
  the groups' bounding boxes against that of the separate windows;
- the time of the separate windows against one pass per bounding box (same
  ONNX Runtime session, best of ``--repeat``, alternating);
- what the shared pass changes: a window's cells see the pixels beyond the
  window edge instead of zeros (the receptive field, 66 pixels, is larger
  than the window), and its sampling grid is that of the box, so its
  probabilities and CAMs differ from those of the window the network was
  trained on.  The verdicts at the model's threshold are compared with the
  separate windows' (cascade off, context model)::

    python benchmarks/window_reuse.py --events 10,30 --frames 40
"""
from __future__ import annotations

import argparse
import time

import numpy as np

SHAPE = (512, 512)


def groups(ys, xs, half):
    """Groups of overlapping ``2 half`` squares centred on ``(ys, xs)`` (lists of indices)."""
    n = len(ys)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if abs(ys[i] - ys[j]) < 2 * half and abs(xs[i] - xs[j]) < 2 * half:
                parent[root(i)] = root(j)
    out = {}
    for i in range(n):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def shared_pass(cam, frame, ys, xs):
    """Probabilities and central 5 x 5 CAMs of events from one pass over their box.

    Returns ``(probs (n, K), cams (n, 5, 5, K), box area [pixel], seconds)``.
    """
    from xcrfilter.ml.cam import upsample_bilinear
    half, s = cam.window // 2, cam.network.stride
    oy, ox = min(ys) - half, min(xs) - half
    hy = -(-(max(ys) + half - oy) // s) * s
    hx = -(-(max(xs) + half - ox) // s) * s
    box = np.zeros((hy, hx), np.float32)
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + hy, frame.shape[0]), min(ox + hx, frame.shape[1])
    box[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = frame[y0:y1, x0:x1]
    t0 = time.perf_counter()
    _, _, low = cam.network.runtime(cam.network.scaler.transform(box)[None].astype(np.float32))
    dt = time.perf_counter() - t0
    up = upsample_bilinear(low[0], s)
    centres = (np.arange(low.shape[1]) * s + s / 2, np.arange(low.shape[2]) * s + s / 2)
    probs, cams = [], []
    for y, x in zip(ys, xs):
        ry, rx = y - oy, x - ox
        iy = (centres[0] >= ry - half) & (centres[0] < ry + half)
        ix = (centres[1] >= rx - half) & (centres[1] < rx + half)
        logits = low[0][np.ix_(iy, ix)].mean(axis=(0, 1)) + cam.network.bias
        e = np.exp(logits - logits.max())
        probs.append(e / e.sum())
        cams.append(up[ry - 2:ry + 3, rx - 2:rx + 3])
    return np.array(probs), np.array(cams), hy * hx, dt


def measure(cam, rate, n_frames, repeat):
    import astropy.units as u
    from xcrfilter.context import context_features, feature_matrix
    from xcrfilter.events import find_events
    from xcrfilter.filters.cam import cam_filter
    from xcrfilter.io.frames import as_energy_cube
    from xcrfilter.ml.features import cam_window_stats, event_features
    from xcrfilter.ml.netgraph import CLASS_NAMES
    from xcrfilter.ml.model import event_windows
    from xcrfilter.simulate import SimulationParameters, simulate_frames
    sim = simulate_frames(n_frames, seed=11, shape=SHAPE, params=SimulationParameters(
        xray_rate=float(rate), cr_rate=1.0))
    cube = as_energy_cube(np.asarray(sim.frames, np.float32) * u.eV)
    events = find_events(cube)
    e = events["ENERGY"].to_value(u.eV)
    sel = (e >= cam.band_ev[0]) & (e < cam.band_ev[1])
    ev = events[sel]
    f, y, x = (np.asarray(ev[c]) for c in ("FRAME", "RAWY", "RAWX"))
    net_on = np.asarray(cam_filter(cube, events, model=cam, cascade=True)["CAM_NET"])[sel]
    out = {"events_per_frame": len(events) / n_frames, "in_band": int(sel.sum()),
           "network_cascade_on": int(net_on.sum())}
    # overlap with the cascade on: groups of the network's windows
    for label, use in (("off", np.ones(len(f), bool)), ("on", net_on)):
        n_win = n_grp = 0
        for fr in np.unique(f[use]):
            k = use & (f == fr)
            n_win += int(k.sum())
            n_grp += len(groups(y[k], x[k], cam.window // 2))
        out[f"windows_{label}"] = n_win
        out[f"groups_{label}"] = n_grp
    # timing and verdicts, cascade off (every in-band event)
    wins = event_windows(cube.data, f, y, x, cam.window)
    best_sep = best_shared = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        p_sep, c_sep = cam.network.window_centres(wins)
        best_sep = min(best_sep, time.perf_counter() - t0)
        probs = np.empty_like(p_sep)
        cams = np.empty_like(c_sep)
        area = 0
        t_shared = 0.0
        for fr in np.unique(f):
            k = np.flatnonzero(f == fr)
            for g in groups(y[k], x[k], cam.window // 2):
                idx = k[g]
                p, c, a, dt = shared_pass(cam, cube.data[fr], y[idx], x[idx])
                probs[idx], cams[idx] = p, c
                area += a
                t_shared += dt
        best_shared = min(best_shared, t_shared)
    out.update(area_ratio=area / (len(f) * cam.window ** 2), t_separate=best_sep,
               t_shared=best_shared)
    ix, icr = CLASS_NAMES.index("XRAY"), CLASS_NAMES.index("CR")
    ctx = feature_matrix(ev, context_features(cube.data, ev, **cam.context_kw),
                         cam.context_names)
    verdict = {}
    for label, (p, c) in (("separate", (p_sep, c_sep)), ("shared", (probs, cams))):
        st = cam_window_stats(c[..., ix], c[..., icr], 2, 2)
        X = event_features(e[sel], p[:, ix], p[:, icr], st, eps=cam.eps)
        verdict[label] = cam.predict_proba(np.hstack([X, ctx])) >= cam.threshold
    out["verdicts_differ"] = int((verdict["separate"] != verdict["shared"]).sum())
    out["p_cr_max_diff"] = float(np.abs(probs[:, icr] - p_sep[:, icr]).max())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", default="10,30", help="X-ray events per frame")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    from xcrfilter.ml.model import load_model
    cam = load_model("context")
    for rate in [int(r) for r in args.events.split(",")]:
        r = measure(cam, rate, args.frames, args.repeat)
        print(f"{r['events_per_frame']:.1f} events/frame, {r['in_band']} in band: "
              f"cascade off {r['windows_off']} windows in {r['groups_off']} groups of "
              f"overlapping windows; cascade on {r['windows_on']} windows in "
              f"{r['groups_on']} groups")
        print(f"  cascade off: boxes {r['area_ratio']:.2f} x the windows' area; separate "
              f"windows {r['t_separate']:.2f} s, one pass per box {r['t_shared']:.2f} s "
              f"({r['t_shared'] / r['t_separate']:.2f} x); verdicts differing "
              f"{r['verdicts_differ']} of {r['in_band']}, P_CR up to "
              f"{r['p_cr_max_diff']:.3f} apart")


if __name__ == "__main__":
    main()
