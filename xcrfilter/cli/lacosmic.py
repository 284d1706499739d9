"""``xcrfilter lacosmic``: the L.A.Cosmic (astroscrappy) pixel mask of one image.

Also ``python -m xcrfilter.cli.lacosmic``.  The options of astroscrappy are
those declared by :data:`xcrfilter.filters.laplacian.FILTER`
(``--lacosmic-*``); the mask is computed by
:func:`xcrfilter.filters.laplacian.lacosmic_mask` and written by
:func:`xcrfilter.io.products.write_mask`.
"""
from __future__ import annotations

import argparse

from ..filters.laplacian import FILTER, lacosmic_mask
from ..io.frames import parse_bunit
from ..io.outputs import check_outputs
from ..io.products import write_mask
from ..io.realdata import load_real_frame
from .argtypes import parse_gain_electrons


def _unit_arg(text):
    """``--unit``: read as a BUNIT is (`xcrfilter.io.frames`)."""
    try:
        return parse_bunit(text, "unit")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit of frames; expected eV, "
                                         "keV, electron or adu") from None


def add_arguments(parser):
    """Arguments of the ``lacosmic`` command (mask of one image file)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("input", nargs="?", help="FITS image (2-D or 3-D) with BUNIT")
    src.add_argument("--real", choices=("gmos", "saao"),
                     help="use a real CCD frame shipped with astroscrappy/ccdproc")
    parser.add_argument("-o", "--output", required=True,
                        help="output FITS: data, MASK extension and LAC* header cards")
    parser.add_argument("--unit", type=_unit_arg, default=None,
                        help="unit of the data when the header has no BUNIT, e.g. adu")
    parser.add_argument("--gain", type=parse_gain_electrons, default=None, metavar="G",
                        help="gain of adu frames, e.g. 1.9electron/adu or 3.65eV/adu; bare "
                        "numbers are electron/adu, as in L.A.Cosmic and astroscrappy; "
                        "ignored (with a warning) for frames in energy or electron units")
    parser.add_argument("--cleaned", action="store_true", help="write the cleaned image")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file")
    group = parser.add_argument_group("astroscrappy options")
    FILTER.add_cli_options(group)


def run(args):
    """Run the ``lacosmic`` command; prints the CR pixel count.  Returns 0."""
    check_outputs({"-o/--output": args.output}, [] if args.real else [args.input],
                  overwrite=args.overwrite)
    if args.real:
        frames = load_real_frame(args.real)
    else:
        frames = args.input
    opts = FILTER.options_from_args(args)
    if args.gain is not None:
        opts["gain"] = args.gain
    ccd = lacosmic_mask(frames, unit=args.unit, return_cleaned=args.cleaned, **opts)
    write_mask(args.output, ccd, overwrite=args.overwrite)
    print(f"{args.real or args.input}: {ccd.header['LACNCRPX']} cosmic-ray pixels "
          f"(sigclip={ccd.header['LACSIGCL']}, gain={ccd.header['LACGAIN']:.4g} e/count, "
          f"readnoise={ccd.header['LACRDNS']:.4g} e) -> {args.output}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="xcrfilter lacosmic",
                                     description="L.A.Cosmic (astroscrappy) cosmic-ray mask")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
