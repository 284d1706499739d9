"""``xcrfilter simulate``: write a simulated observation with its truth to FITS.

Example::

    xcrfilter simulate --frames 1000 --shape 512 512 --xray-rate 1 --cr-rate 1 \\
        --seed 1 -o obs.fits
"""
from __future__ import annotations

import sys

import astropy.units as u

__all__ = ["add_arguments", "run"]


def _parse_sets(items):
    """``["name=value", ...]`` -> kwargs of `SimulationParameters` (typed)."""
    from dataclasses import fields

    from ..simulate.params import SimulationParameters
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
        else:
            kind = int if isinstance(default, int) else float
            try:
                out[name] = kind(value)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise ValueError(f"--set {item!r}: {name} must be {what}, got "
                                 f"{value!r}") from None
    return out


def add_arguments(parser):
    """Add the ``simulate`` options to an `argparse.ArgumentParser`."""
    from .argtypes import parse_energy
    parser.add_argument("--frames", type=int, required=True, metavar="N",
                        help="number of frames")
    parser.add_argument("--shape", type=int, nargs=2, default=(512, 512),
                        metavar=("NY", "NX"), help="frame shape (rows, columns)")
    parser.add_argument("--xray-rate", type=float, default=None,
                        help="mean X-rays per frame, Poisson (default: 1, or the preset's)")
    parser.add_argument("--cr-rate", type=float, default=None,
                        help="mean cosmic-ray showers per frame, Poisson (default: 1, or "
                             "the preset's)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: a fresh one, written to the header)")
    parser.add_argument("-o", "--output", required=True, metavar="OBS.fits",
                        help="output FITS file: frames, TRUTH (per-pixel labels 0 none, "
                        "1 X-ray, 2 CR) and SOURCES extensions")
    parser.add_argument("--xray-energy", type=parse_energy, default=None, metavar="E",
                        help="monochromatic X-rays at this energy (default: log-uniform "
                        "0.2-10 keV)")
    parser.add_argument("--readout-noise", type=float, default=None,
                        help="readout noise rms [electron] (default: the WFI 7 e-)")
    parser.add_argument("--chunk-frames", type=int, default=64, metavar="N",
                        help="frames simulated and written at a time")
    from .argtypes import parse_gain
    parser.add_argument("--gain", type=parse_gain, default=None, metavar="G",
                        help="write adu with this gain, e.g. 3.65eV/adu or 1electron/adu "
                        "(bare numbers are eV/adu; default: write eV)")
    parser.add_argument("--set", dest="set_params", action="append", default=None,
                        metavar="NAME=VALUE",
                        help="set any SimulationParameters field, e.g. --set photon_mean=0.02 "
                             "(repeatable)")
    from ..simulate.variants import PRESETS
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="named physics variant for evaluation: "
                             + "; ".join(f"{k}: {v['doc']}".replace("%", "%%")
                                         for k, v in PRESETS.items())
                             + " (applied before --set, --xray-rate and --cr-rate "
                               "given explicitly)")
    parser.add_argument("--randomize", action="store_true",
                        help="draw the physics anew for every block of 16 frames from the "
                             "documented ranges (secondary spread and yields, orphan "
                             "showers, CR and X-ray rates, readout noise, incidence, X-ray "
                             "spectrum); for training data")
    parser.add_argument("--randomize-excluding", default=None, choices=list(PRESETS),
                        metavar="PRESET",
                        help="with --randomize: leave out the distinctive physics of this "
                             "preset (leave-one-physics-out training)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace the output")
    return parser


def run(args):
    """Run ``xcrfilter simulate`` with parsed ``args``; returns the exit code."""
    from ..detector import DetectorModel
    from ..simulate.fitsio import write_simulation
    from ..simulate.params import SimulationParameters
    from ..simulate.variants import PhysicsRanges, RandomPhysicsSimulator, preset

    try:
        if args.frames < 1:
            raise ValueError("--frames must be >= 1")
        if min(args.shape) < 5:
            raise ValueError("--shape must be at least 5 x 5")
        if args.xray_energy is not None and args.xray_energy.to_value(u.eV) <= 0:
            raise ValueError(f"--xray-energy must be positive, got {args.xray_energy}")
        det_kw = {"shape": tuple(args.shape)}
        params = SimulationParameters()
        if getattr(args, "preset", None):
            params, pdet = preset(args.preset)
            det_kw["readout_noise"] = pdet.readout_noise
        if args.readout_noise is not None:
            det_kw["readout_noise"] = args.readout_noise * u.electron
        det = DetectorModel.wfi(**det_kw)
        explicit = {k: v for k, v in (("xray_rate", args.xray_rate),
                                      ("cr_rate", args.cr_rate)) if v is not None}
        params = params.replace(**explicit, **_parse_sets(getattr(args, "set_params", None) or []))
        physics = None
        if getattr(args, "randomize", False):
            if args.preset or explicit or getattr(args, "set_params", None):
                raise ValueError("--randomize draws the physics itself: it cannot be "
                                 "combined with --preset, --set or explicit rates")
            ranges = PhysicsRanges()
            if args.randomize_excluding:
                ranges = ranges.excluding(args.randomize_excluding)
            physics = RandomPhysicsSimulator(ranges, det)
        elif getattr(args, "randomize_excluding", None):
            raise ValueError("--randomize-excluding needs --randomize")
        from ..units import as_gain
        gain = None if args.gain is None else as_gain(args.gain, "--gain",
                                                      pair_energy=det.pair_energy)
        info = write_simulation(args.output, args.frames, seed=args.seed, detector=det,
                                params=params, spectrum=args.xray_energy,
                                chunk_size=args.chunk_frames, gain=gain,
                                overwrite=args.overwrite, progress=not args.quiet,
                                physics=physics)
    except (ValueError, TypeError, FileExistsError, OSError) as exc:
        print(f"xcrfilter simulate: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['path']}: {info['n_frames']} frames, {info['n_sources']} sources, "
          f"seed {info['seed']}")
    return 0
