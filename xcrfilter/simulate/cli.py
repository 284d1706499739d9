"""``xcrfilter simulate``: write a simulated observation with its truth to FITS.

Example::

    xcrfilter simulate --frames 1000 --shape 512 512 --xray-rate 1 --cr-rate 1 \\
        --seed 1 -o obs.fits
"""
from __future__ import annotations

import argparse
import sys

import astropy.units as u

__all__ = ["add_arguments", "run"]


def _energy(text):
    try:
        q = u.Quantity(text)
    except Exception:
        raise argparse.ArgumentTypeError(f"not an energy: {text!r} (e.g. 5.9keV)") from None
    if not q.unit.is_equivalent(u.eV):
        raise argparse.ArgumentTypeError(f"{text!r} has no energy unit (e.g. 5.9keV)")
    if q.to_value(u.eV) <= 0:
        raise argparse.ArgumentTypeError("energy must be positive")
    return q


def _parse_sets(items):
    """``["name=value", ...]`` -> kwargs of `SimulationParameters` (typed)."""
    from dataclasses import fields

    from .params import SimulationParameters
    known = {f.name: f for f in fields(SimulationParameters) if f.metadata.get("key")}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(known))}")
        default = known[name].default
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"--set {item!r}: expected a boolean")
            out[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


def add_arguments(parser):
    """Add the ``simulate`` options to an `argparse.ArgumentParser`."""
    parser.add_argument("--frames", type=int, required=True, help="number of frames")
    parser.add_argument("--shape", type=int, nargs=2, default=(512, 512),
                        metavar=("NY", "NX"), help="frame shape (rows, columns)")
    parser.add_argument("--xray-rate", type=float, default=1.0,
                        help="mean X-rays per frame (Poisson)")
    parser.add_argument("--cr-rate", type=float, default=1.0,
                        help="mean cosmic-ray showers per frame (Poisson)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("-o", "--output", required=True, help="output FITS file")
    parser.add_argument("--xray-energy", type=_energy, default=None,
                        help="monochromatic X-rays at this energy (e.g. 5.9keV); "
                             "without it log-uniform 0.2-10 keV")
    parser.add_argument("--readout-noise", type=float, default=None,
                        help="readout noise rms in electrons; without it the WFI 7 e-")
    parser.add_argument("--chunk-size", type=int, default=64,
                        help="frames simulated and written at a time")
    parser.add_argument("--gain", type=float, default=None,
                        help="write ADU with this gain in eV/adu; without it eV")
    parser.add_argument("--set", dest="set_params", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="set any SimulationParameters field, e.g. --set photon_mean=0.02 "
                             "(repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace the output")
    return parser


def run(args):
    """Run ``xcrfilter simulate`` with parsed ``args``; returns the exit code."""
    from ..detector import DetectorModel
    from .fitsio import write_simulation
    from .params import SimulationParameters

    try:
        if args.frames < 1:
            raise ValueError("--frames must be >= 1")
        if min(args.shape) < 5:
            raise ValueError("--shape must be at least 5 x 5")
        det_kw = {"shape": tuple(args.shape)}
        if args.readout_noise is not None:
            det_kw["readout_noise"] = args.readout_noise * u.electron
        det = DetectorModel.wfi(**det_kw)
        params = SimulationParameters(xray_rate=args.xray_rate, cr_rate=args.cr_rate,
                                      **_parse_sets(getattr(args, "set_params", [])))
        gain = None if args.gain is None else args.gain * u.eV / u.adu
        info = write_simulation(args.output, args.frames, seed=args.seed, detector=det,
                                params=params, spectrum=args.xray_energy,
                                chunk_size=args.chunk_size, gain=gain,
                                overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, TypeError, FileExistsError, OSError) as exc:
        print(f"xcrfilter simulate: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['path']}: {info['n_frames']} frames, {info['n_sources']} sources, "
          f"seed {info['seed']}")
    return 0
