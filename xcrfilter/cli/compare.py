"""The ``xcrfilter compare`` command: read an observation and its truth, write the report.

The evaluation is in `xcrfilter.evaluation.compare`, the figures in
`xcrfilter.evaluation.compare_plots`.
"""
from __future__ import annotations

import argparse
import os

import astropy.units as u
import numpy as np

from ..evaluation.compare import REPORT_FILES, compare_chunks, print_report

__all__ = ["add_arguments", "run", "main"]


def _read_truth_labels(path):
    """Pixel labels from a simulator file (``xcrfilter.simulate.read_truth``)."""
    try:
        from ..simulate import read_truth
    except ImportError:
        try:
            from ..simulate.fitsio import read_truth
        except ImportError:
            read_truth = None
    if read_truth is not None:
        try:
            truth = read_truth(path)
        except KeyError:
            truth = None
        if isinstance(truth, (tuple, list)):
            return np.asarray(truth[0])
        if truth is not None:
            return np.asarray(getattr(truth, "labels", truth))
    from astropy.io import fits
    with fits.open(path) as hdul:
        for name in ("LABELS", "TRUTH"):
            if name in hdul and hdul[name].is_image and hdul[name].data is not None:
                return np.asarray(hdul[name].data)
    raise ValueError(f"{path}: no truth labels (LABELS/TRUTH image extension) found.")


def add_arguments(parser):
    """Arguments of ``xcrfilter compare``."""
    parser.add_argument("observation", metavar="OBS.fits",
                        help="frames FITS file (e.g. from xcrfilter simulate)")
    parser.add_argument("--truth", default=None, metavar="TRUTH.fits",
                        help="simulator file with the TRUTH extension (default: the "
                        "observation)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="report directory (tables, figures, events)")
    parser.add_argument("-m", "--method", default="all",
                        help="comma-separated filters to compare, or all (the default); "
                        "unavailable ones are skipped")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report files of an earlier run in DIR")
    from .argtypes import non_negative_int, parse_energy, positive_int
    parser.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                        help="use only the first N frames (default: all)")
    parser.add_argument("--chunk-frames", type=positive_int, default=200, metavar="N",
                        help="frames read and filtered at a time")
    parser.add_argument("--pixel-frames", type=non_negative_int, default=50, metavar="N",
                        help="frames for the pixel-wise Laplacian confusion (0: none)")
    parser.add_argument("--event-threshold", type=parse_energy, default=260 * u.eV,
                        metavar="E", help="minimum central-pixel energy of an event")
    parser.add_argument("--split-threshold", type=parse_energy, default=80 * u.eV,
                        metavar="E", help="pixels at or above it are active")
    parser.add_argument("--mip-threshold", type=parse_energy, default=10 * u.keV,
                        metavar="E", help="events at or above it are minimum-ionising "
                        "particles")
    from ..registry import add_cli_options
    add_cli_options(parser)


def file_chunks(obs_path, truth_path, chunk_frames, max_frames):
    """Yield (FrameCube, labels) chunks of a frames file and its truth (memory-mapped).

    The frames are read exactly as ``xcrfilter filter`` reads them
    (`xcrfilter.io.stream.FrameStream`: image HDU, MASK/DQ, BUNIT, GAIN, ADUOFFS).
    """
    from astropy.io import fits

    from ..io.stream import FrameStream
    stream = FrameStream(obs_path, chunk_frames=chunk_frames, name="OBS")
    n = stream.n_frames if not max_frames else min(stream.n_frames, int(max_frames))
    with fits.open(truth_path, memmap=True) as thdul:
        thdu = next((thdul[k] for k in ("TRUTH", "LABELS") if k in thdul), None)
        if thdu is None:
            labels_all = _read_truth_labels(truth_path)
        else:
            labels_all = thdu.data
        for a in range(0, n, int(chunk_frames)):
            b = min(n, a + int(chunk_frames))
            labels = np.array(labels_all[a:b] if np.ndim(labels_all) == 3
                              else np.asarray(labels_all)[None])
            yield stream.read(a, b), labels


def run(args):
    """Run ``xcrfilter compare``; prints the Table 2 layout.  Returns 0."""
    from ..pipeline import parse_methods
    from ..registry import FILTERS, filter_spec, options_from_args
    # all: every registered filter, those that cannot run reported as skipped
    methods = None if args.method.strip().lower() == "all" else parse_methods(args.method)
    options = options_from_args(args, methods or list(FILTERS))
    for name, opts in options.items():
        spec = filter_spec(name)
        for param in spec.output_options(opts):
            option = next(p for p in spec.params if p.name == param).option(name)
            raise ValueError(f"{option}: xcrfilter compare writes no {name} filter "
                             "outputs; use xcrfilter filter.")
    from ..io.outputs import check_outputs
    # no report file may be an input (OBS.fits or TRUTH.fits inside DIR)
    check_outputs({f"-o/--output {name}": os.path.join(args.output, name)
                   for name in REPORT_FILES}, [args.observation, args.truth],
                  overwrite=args.overwrite, create_dirs=True)
    chunks = file_chunks(args.observation, args.truth or args.observation,
                         args.chunk_frames, args.max_frames)
    report = compare_chunks(chunks, methods, options=options,
                            event_threshold=args.event_threshold,
                            split_threshold=args.split_threshold,
                            mip_threshold=args.mip_threshold,
                            pixel_frames=args.pixel_frames, outdir=args.output)
    print_report(report)
    from ..io.spectra import level_lines
    for line in level_lines(report.events, report.truth):
        print(line)
    print("wrote " + ", ".join(os.path.basename(f) for f in report.figures)
          + f", table.ecsv, table.txt, roc.ecsv, events.fits in {args.output}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="xcrfilter compare", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
