"""The ``xcrfilter`` command line: the console script and its sub-commands.

:func:`main` parses the arguments (:func:`build_parser`) and calls the
sub-command's ``run``, printing its errors as one line; ``xcrfilter
filter`` is :mod:`xcrfilter.cli.filter`, each other sub-command a module
of :mod:`xcrfilter.cli`.  Sub-commands::

    xcrfilter filter FRAMES.fits [MORE.fits ...] --method vfaint -o events.fits
    xcrfilter simulate --frames N -o obs.fits
    xcrfilter train --tiles tiles.npz --frames obs.fits --output model_dir/
    xcrfilter compare OBS.fits -o report/
    xcrfilter spectrum EVENTS.fits -o NAME [--rmf]
    xcrfilter lacosmic IMAGE.fits -o mask.fits      (or --real gmos|saao)
    xcrfilter demo [-o DIR]

Run ``xcrfilter <command> --help`` for the options of each.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

import astropy.units as u

from .argtypes import HelpFormatter
from .filter import add_filter_parser

__all__ = ["main", "build_parser"]

# sub-command -> module providing add_arguments(parser) and run(args)
_DELEGATES = {
    "simulate": ("xcrfilter.cli.simulate",
                 "simulate frames of an X-ray detector with cosmic rays (FITS + truth)"),
    "train": ("xcrfilter.cli.train",
              "train the CAM filter (DenseNet frame classifier + random forest)"),
    "compare": ("xcrfilter.cli.compare",
                "run every filter on a simulated observation and write the comparison"),
    "spectrum": ("xcrfilter.cli.spectrum",
                 "OGIP PHA spectra (and an RMF), background levels and ds9 regions of the "
                 "events each filter combination accepts"),
    "lacosmic": ("xcrfilter.cli.lacosmic",
                 "L.A.Cosmic (astroscrappy) cosmic-ray mask of one image, e.g. the real "
                 "CCD frames shipped with astroscrappy and ccdproc (--real gmos|saao)"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="xcrfilter", formatter_class=HelpFormatter,
        description="Cosmic-ray background filters for X-ray imaging detector frames "
        "(very-faint-mode, CAM machine learning, Laplacian, self-anti-coincidence).")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"xcrfilter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_filter_parser(sub)
    for name, (modname, help_text) in _DELEGATES.items():
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper()
                           + help_text[1:] + ".",
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    from .demo import add_arguments as demo_args, run as demo_run
    p = sub.add_parser("demo", help="simulate a small observation, filter it with every "
                       "available method and print the comparison table",
                       formatter_class=HelpFormatter)
    demo_args(p)
    p.set_defaults(func=demo_run)
    return parser


def _value_options(parser):
    """Option strings of ``parser`` and its sub-commands that take exactly one value."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.option_strings and action.nargs is None:
            found.update(action.option_strings)
    return found


def _join_negative_values(parser, argv):
    """``--opt -1%`` -> ``--opt=-1%``: a negative-looking value is the option's value.

    argparse takes ``-1%`` (or ``-2keV``) for an option name and answers
    "expected one argument"; joined, the option's own check can say what
    range the value must be in.
    """
    takes_value = _value_options(parser)
    out = []
    for i, arg in enumerate(argv):
        prev = out[-1] if out else None
        if (prev in takes_value and prev.startswith("--") and len(arg) > 1
                and arg[0] == "-" and (arg[1].isdigit() or arg[1] == ".")):
            out[-1] = f"{prev}={arg}"
            continue
        out.append(arg)
    return out


def main(argv=None):
    """Entry point of the ``xcrfilter`` console script."""
    for stream in (sys.stdout, sys.stderr):
        # a file name the terminal's encoding cannot show is escaped: printing the
        # summary must not fail once the outputs are written
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(parser, sys.argv[1:] if argv is None
                                                   else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError,
            u.UnitsError) as exc:
        print(f"xcrfilter {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"xcrfilter {args.command}: error: {import_error_message(exc)}", file=sys.stderr)
        return 1


def import_error_message(exc):
    """One line for a missing optional dependency, naming a missing Keras backend.

    Parameters
    ----------
    exc : ImportError

    Returns
    -------
    str
    """
    backend = os.environ.get("KERAS_BACKEND", "")
    missing = (getattr(exc, "name", None) or "").split(".")[0]
    if backend and missing == backend:
        return (f"the Keras backend {backend!r} (environment variable KERAS_BACKEND) is not "
                f"installed ({exc}); install it or set KERAS_BACKEND=jax.")
    return f"{exc} (a missing optional dependency; see the installation notes)."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
