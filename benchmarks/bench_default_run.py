"""Cost of the default calibration: ``xcrfilter filter FRAMES.fits`` against fixed thresholds.

Usage::

    python benchmarks/bench_default_run.py [--frames 1000] [--repeat 2] [--dir runs/bench]

Simulates ``--frames`` frames of the ``paper`` preset (512 x 512 float32,
about 1 MB a frame) into a FITS cube, then runs, alternating and in fresh
processes, ``xcrfilter filter`` with

* no method options (vfaint and SAC, the radius calibrated by frame shift
  to 2 %, the default), and
* ``--max-lost-xray none`` (vfaint and SAC at the fixed 22-pixel radius),

and reports the best wall-clock time of each, its frames per second, the
peak resident memory (``/usr/bin/time``) and the ratio of the two, a figure
that holds on a shared machine.
"""
import argparse
import os
import subprocess
import sys


def run(cmd):
    """Wall-clock seconds and peak memory [GB] of ``cmd`` (GNU time)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True,
                         text=True, check=True)
    wall, kb = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kb) / 1024 ** 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--dir", default="runs/bench")
    args = p.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    frames = os.path.join(args.dir, f"paper-{args.frames}.fits")
    if not os.path.exists(frames):
        subprocess.run(["xcrfilter", "simulate", "--preset", "paper", "--frames",
                        str(args.frames), "--seed", "5", "-q", "-o", frames], check=True)
    out = os.path.join(args.dir, "events.fits")
    runs = {"default (SAC calibrated by frame shift)": [],
            "--max-lost-xray none (SAC at 22 px)": []}
    extra = {name: ([] if "default" in name else ["--max-lost-xray", "none"]) for name in runs}
    for _ in range(args.repeat):
        for name in runs:
            runs[name].append(run(["xcrfilter", "filter", frames, "-o", out, "-q",
                                   "--overwrite", *extra[name]]))
    best = {name: min(r) for name, r in runs.items()}
    size = os.path.getsize(frames) / 1024 ** 3
    print(f"{args.frames} frames, {size:.2f} GB, best of {args.repeat}:")
    for name, (wall, mem) in best.items():
        print(f"  {name:42s} {wall:7.1f} s  {args.frames / wall:6.0f} frames/s  "
              f"peak {mem:.2f} GB")
    (w0, _), (w1, _) = best.values()
    print(f"  ratio default / fixed: {w0 / w1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
