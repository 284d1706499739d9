"""Throughput of event finding and the very-faint-mode filter.

Measures frames per second of :func:`xcrfilter.events.find_events` and
:func:`xcrfilter.filters.vfaint.vfaint_filter` on a cube of 512 x 512 frames
of Gaussian readout noise (7 e- rms = 25.55 eV at 3.65 eV per pair) with
simple injected islands at the seed paper's rates (Poisson mean one
X-ray-like island and one cosmic-ray-like track per frame, Sec. 2), beside
the cheapest possible pass over the same cube,
``np.count_nonzero(frames > event_threshold)``, and prints the ratio
(ratios are measured in one run on the same frames: this machine is noisy).

Usage::

    python benchmarks/bench_events.py --frames 200 --repeat 3
"""
import argparse
import os
import platform
import sys
import time

import astropy.units as u
import numpy as np

from xcrfilter.events import find_events
from xcrfilter.filters.vfaint import vfaint_filter
from xcrfilter.io.frames import as_energy_cube

NOISE_EV = 7 * 3.65  # 25.55 eV rms
EVENT_THRESHOLD = 260 * u.eV


def make_cube(n_frames, shape=(512, 512), seed=1):
    """Noise cube (float32, eV) with injected X-ray islands and CR tracks.

    X-ray-like islands: energy log-uniform in 0.3-10 keV, a Gaussian charge
    cloud (sigma 0.3 pixel) at a random sub-pixel position, integrated on a
    3 x 3 grid.  CR-like tracks: straight lines of 5-60 pixels at a random
    angle, 0.5-40 keV per pixel.  Both counts per frame are Poisson(1).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    cube = rng.standard_normal((n_frames, ny, nx), dtype=np.float32)
    cube *= np.float32(NOISE_EV)
    n_x = rng.poisson(1.0, n_frames)
    n_cr = rng.poisson(1.0, n_frames)
    # X-ray islands, vectorised
    f = np.repeat(np.arange(n_frames), n_x)
    m = f.size
    e = np.exp(rng.uniform(np.log(300.0), np.log(10000.0), m))
    y0 = rng.integers(3, ny - 3, m)
    x0 = rng.integers(3, nx - 3, m)
    sy, sx = rng.uniform(-0.5, 0.5, (2, m))
    d = np.arange(-1, 2)
    wy = np.exp(-0.5 * ((d[None, :] - sy[:, None]) / 0.3) ** 2)
    wx = np.exp(-0.5 * ((d[None, :] - sx[:, None]) / 0.3) ** 2)
    w = wy[:, :, None] * wx[:, None, :]
    w /= w.sum(axis=(1, 2), keepdims=True)
    for iy in range(3):
        for ix in range(3):
            np.add.at(cube, (f, y0 + iy - 1, x0 + ix - 1),
                      (e * w[:, iy, ix]).astype(np.float32))
    # CR tracks
    f = np.repeat(np.arange(n_frames), n_cr)
    k = f.size
    length = rng.integers(5, 61, k)
    angle = rng.uniform(0, np.pi, k)
    y0 = rng.uniform(0, ny, k)
    x0 = rng.uniform(0, nx, k)
    step = np.arange(61)
    use = step[None, :] < length[:, None]
    yy = np.round(y0[:, None] + step[None, :] * np.sin(angle)[:, None]).astype(int)
    xx = np.round(x0[:, None] + step[None, :] * np.cos(angle)[:, None]).astype(int)
    ok = use & (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
    ff = np.broadcast_to(f[:, None], ok.shape)[ok]
    dep = rng.uniform(500.0, 40000.0, int(ok.sum())).astype(np.float32)
    np.add.at(cube, (ff, yy[ok], xx[ok]), dep)
    return cube, int(n_x.sum()), int(n_cr.sum())


def best_time(func, repeat):
    best = np.inf
    result = None
    for _ in range(repeat):
        result = None  # free the previous result before timing the next call
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200,
                        help="number of 512 x 512 frames in the cube (default 200)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timing repeats, the best is reported (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeat < 1:
        parser.error("--frames and --repeat must be >= 1")

    t0 = time.perf_counter()
    data, n_xray, n_cr = make_cube(args.frames, seed=args.seed)
    t_make = time.perf_counter() - t0
    frames_q = data * u.eV  # a Quantity view, as a user would pass it
    cube = as_energy_cube(frames_q)
    thr = np.float32(EVENT_THRESHOLD.to_value(u.eV))
    n = args.frames

    t_bare, n_above = best_time(lambda: np.count_nonzero(data > thr), args.repeat)
    t_find, events = best_time(lambda: find_events(cube, EVENT_THRESHOLD), args.repeat)
    t_vf, filtered = best_time(lambda: vfaint_filter(events), args.repeat)
    t_conv, _ = best_time(lambda: as_energy_cube(frames_q), args.repeat)
    t_all, filtered2 = best_time(lambda: vfaint_filter(frames_q), args.repeat)
    assert np.array_equal(filtered["STATUS"], filtered2["STATUS"])

    n_acc = int(np.count_nonzero(filtered["STATUS"] == 0))
    print(f"# bench_events: {n} frames 512x512, noise {NOISE_EV:.2f} eV rms, "
          f"{n_xray} X-ray islands + {n_cr} CR tracks injected "
          f"(cube made in {t_make:.1f} s)")
    print(f"# {n_above} pixels > {thr:g} eV; {len(events)} events found, "
          f"{n_acc} accepted by vfaint_filter")
    print(f"# python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs; best of {args.repeat}")
    rows = [
        ("np.count_nonzero(frames > 260 eV)", t_bare),
        ("find_events(FrameCube)", t_find),
        ("vfaint_filter(events table)", t_vf),
        ("find_events + vfaint_filter", t_find + t_vf),
        ("as_energy_cube(Quantity)", t_conv),
        ("vfaint_filter(Quantity frames), all", t_all),
    ]
    print()
    print(f"{'step':40s} {'time [s]':>10s} {'frames/s':>12s} {'x bare pass':>12s}")
    print("-" * 77)
    for name, t in rows:
        print(f"{name:40s} {t:10.4f} {n / t:12.1f} {t / t_bare:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
