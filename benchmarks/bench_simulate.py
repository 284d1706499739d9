"""Speed of the frame simulator (target >= 200 frames/s, the WFI frame rate).

Simulates 512 x 512 frames at the paper's rates (1 X-ray + 1 CR shower per
frame, 7 e- noise) and prints frames/s for the streaming generator, with the
cheapest possible pass over the same amount of data (drawing the noise
alone with ``Generator.standard_normal``) as a yardstick, plus the FITS writer
and the tile builder.  Run::

    python benchmarks/bench_simulate.py [--frames 2000] [--chunk 64]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from xcrfilter.simulate import iter_frames, simulate_tiles, write_simulation


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--tiles", type=int, default=500, help="tiles per class")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    n = a.frames

    def sim():
        for _ in iter_frames(n, seed=1, chunk_size=a.chunk):
            pass

    def noise_only():
        rng = np.random.default_rng(1)
        for i in range(0, n, 16):
            rng.standard_normal((min(16, n - i), 512, 512), dtype=np.float32)

    rows = []
    t_noise = timed(noise_only, a.repeat)
    rows.append(("noise only (standard_normal)", n / t_noise))
    t_sim = timed(sim, a.repeat)
    rows.append(("simulate (iter_frames)", n / t_sim))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obs.fits")
        t_w = timed(lambda: write_simulation(path, n, seed=1, chunk_size=a.chunk,
                                             overwrite=True), 1)
        rows.append(("simulate + write FITS", n / t_w))
    t_tiles = timed(lambda: simulate_tiles(a.tiles, seed=1), 1)

    print(f"512 x 512 frames, 1 X-ray + 1 CR per frame, {n} frames, chunk {a.chunk}")
    print(f"{'step':34s} {'frames/s':>10s}")
    for name, fps in rows:
        print(f"{name:34s} {fps:10.1f}")
    print(f"{'simulate / noise-only time ratio':34s} {t_sim / t_noise:10.2f}")
    print(f"tile builder: {4 * a.tiles} tiles (equal classes) in {t_tiles:.1f} s = "
          f"{4 * a.tiles / t_tiles:.0f} tiles/s")
    ok = n / t_sim >= 200
    print(f"target >= 200 frames/s: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
