"""Stream a long simulation through the filters and write the comparison report.

``python docs/scripts/compare_stream.py --frames 5000 --seed 43 -o report/``
simulates the frames chunk by chunk with ``xcrfilter.simulate.iter_frames``
(nothing is written but the report) and calls
:func:`xcrfilter.evaluation.compare.compare_chunks`; the output is the same as
``xcrfilter compare`` on a file holding those frames.
"""
import argparse
import time

import astropy.units as u

from xcrfilter.evaluation.compare import compare_chunks, print_report
from xcrfilter.simulate import iter_frames


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=43)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("-m", "--method", default="vfaint,sac,cam")
    parser.add_argument("--cam-model", default=None,
                        help="CAM model directory or shipped name (context, paper)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    t0 = time.time()
    chunks = ((c.frames * u.eV, c.labels)
              for c in iter_frames(args.frames, seed=args.seed, chunk_size=args.chunk))
    options = {"cam": {"model": args.cam_model}} if args.cam_model else None
    report = compare_chunks(chunks, args.method.split(","), pixel_frames=0,
                            outdir=args.output, options=options)
    print_report(report, f"{report.n_frames} frames (seed {args.seed}), "
                         f"{len(report.events)} events; methods: "
                         f"{', '.join(report.methods)}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
