#!/usr/bin/env python
"""Speed of the CAM filter next to the traditional (VF) filter on the same frames.

512 x 512 frames simulated at the paper's rates (one X-ray and one CR shower
per frame on average, ``xcrfilter.simulate``).  Everything is timed in one
run on the same frames (this machine is shared and noisy: compare ratios).
The model is loaded and its network compiled before timing (a warm-up pass),
as in any long-running use; the one-off cost is printed separately.

    python benchmarks/bench_cam.py --frames 400 [--model DIR] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import astropy.units as u
import numpy as np


def _best(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--seed", type=int, default=909)
    p.add_argument("--model", default=None,
                   help="CAM model directory or name, 'context' or 'paper' (default: 'context')")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    from xcrfilter.events import find_events
    from xcrfilter.filters.cam import cam_filter
    from xcrfilter.filters.vfaint import vfaint_filter
    from xcrfilter.io.frames import as_energy_cube
    from xcrfilter.ml.model import load_model
    from xcrfilter.simulate import simulate_frames

    ch = simulate_frames(args.frames, seed=args.seed)
    cube = as_energy_cube(ch.frames * u.eV)
    n = args.frames
    t = time.perf_counter()
    model = load_model(args.model)
    t_load = time.perf_counter() - t
    ev0 = find_events(cube)
    t = time.perf_counter()
    cam_filter(cube, ev0, model=model)  # warm-up: compiles the batch sizes
    t_warm = time.perf_counter() - t

    t_cheap, _ = _best(lambda: np.count_nonzero(cube.data > 260.0), args.repeat)
    t_find, ev = _best(lambda: find_events(cube), args.repeat)
    t_vf, _ = _best(lambda: vfaint_filter(ev), args.repeat)
    t_cam, evc = _best(lambda: cam_filter(cube, ev, model=model), args.repeat)
    from xcrfilter.context import context_features
    from xcrfilter.filters.morph import is_available, morph_filter
    t_ctx, _ = _best(lambda: context_features(cube.data, ev), args.repeat)
    t_morph = None
    if is_available():
        morph_filter(cube, ev)  # warm-up: loads the forest
        t_morph, _ = _best(lambda: morph_filter(cube, ev), args.repeat)
    e = ev["ENERGY"].to_value(u.eV)
    n_scored = int(((e >= 300) & (e < 10000)).sum())

    print(f"{n} frames 512x512 (seed {args.seed}), {len(ev)} events, {n_scored} scored by CAM "
          f"({n_scored / n:.2f} per frame); model {model.name} ({model.sha256[:12]})")
    print(f"one-off: model load {t_load:.2f} s, network compile/warm-up {t_warm:.2f} s")
    print(f"{'step':42s} {'s':>8s} {'frames/s':>10s}")
    rows = [
        ("count_nonzero(frames > 260 eV)", t_cheap),
        ("find_events", t_find),
        ("vfaint_filter (on events)", t_vf),
        ("traditional: find_events + vfaint", t_find + t_vf),
        ("cam_filter (on events)", t_cam),
        ("CAM: find_events + cam_filter", t_find + t_cam),
        ("context_features (on events)", t_ctx),
    ]
    if t_morph is not None:
        rows.append(("morph_filter (on events)", t_morph))
    for name, t in rows:
        print(f"{name:42s} {t:8.3f} {n / t:10.1f}")
    print(f"CAM / traditional time ratio: {(t_find + t_cam) / (t_find + t_vf):.1f}")
    print(f"rejected: CAM {int((np.asarray(evc['STATUS']) & 32).astype(bool).sum())} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
