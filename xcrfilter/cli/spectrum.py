"""``xcrfilter spectrum``: PHA spectra, an RMF, background levels and regions of an event file.

::

    xcrfilter spectrum events.fits -o obs --combination vfaint --combination all --rmf

writes ``obs_vfaint.pha``, ``obs_all.pha`` (OGIP type I), ``obs.rmf`` and
``obs.arf`` (with ``--rmf``), ``obs_levels.ecsv`` (the background levels)
and prints the level table.  Numbers: :mod:`xcrfilter.io.spectra`; files:
:mod:`xcrfilter.io.spectrum_files`.
"""
from __future__ import annotations

import argparse
import os

import astropy.units as u
import numpy as np

__all__ = ["add_arguments", "run", "product_paths", "read_event_file"]


def _quantity(unit, what, example):
    def parse(text):
        try:
            q = u.Quantity(str(text).strip())
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}; write e.g. "
                                             f"{example}") from None
        if q.unit == u.dimensionless_unscaled:
            q = q.value * unit
        try:
            q = q.to(unit)
        except u.UnitConversionError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} (unit {q.unit}); write "
                                             f"e.g. {example}") from None
        if not q.value > 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return q
    return parse


def add_arguments(p):
    """Options of ``xcrfilter spectrum``."""
    from .argtypes import parse_energy
    p.add_argument("events", metavar="EVENTS.fits", help="event file of xcrfilter filter "
                   "(or compare's events.fits, with TRUTH)")
    p.add_argument("-o", "--output", required=True, metavar="NAME",
                   help="output name: NAME_<combination>.pha, NAME_levels.ecsv, and with "
                   "--rmf NAME.rmf and NAME.arf")
    p.add_argument("--combination", action="append", default=None, metavar="FILTERS",
                   help="filters whose accepted events (their STATUS bits 0) make a "
                   "spectrum, joined by '+', e.g. vfaint+sac; 'all' every bit (STATUS = 0), "
                   "'none' every event (repeatable; default: none, each filter that ran, all)")
    p.add_argument("--rmf", action="store_true",
                   help="also write a diagonal-Gaussian RMF (Fano factor, read noise and pair "
                   "energy of the detector model: FANO, RDNOISE, PAIRENER keywords, else "
                   "the WFI values) and a flat ARF of the detector area")
    p.add_argument("--band", action="append", nargs=2, type=parse_energy, default=None,
                   metavar=("LOW", "HIGH"), help="band of the background levels, e.g. "
                   "--band 2keV 7keV (repeatable; default: 2-7 keV and 0.3-10 keV)")
    p.add_argument("--exposure", type=_quantity(u.s, "a time", "100s"), default=None,
                   metavar="T", help="exposure (default: EXPOSURE, LIVETIME or ONTIME, else "
                   "NFRAMES x frame time)")
    p.add_argument("--frame-time", type=_quantity(u.s, "a time", "5ms"), default=None,
                   metavar="T", help="exposure = NFRAMES x this frame time")
    p.add_argument("--pixel-size", type=_quantity(u.um, "a length", "130um"), default=None,
                   metavar="L", help="pixel pitch (default: PIXSIZE keyword, else the WFI "
                   "130um)")
    p.add_argument("--area", type=_quantity(u.cm ** 2, "an area", "4.4cm2"), default=None,
                   metavar="A", help="detector area (default: FRMROWS x FRMCOLS x pixel "
                   "size squared)")
    p.add_argument("--regions", default=None, metavar="NAME",
                   help="also write ds9 region files NAME_<combination>.reg: accepted "
                   "events green circles, rejected red crosses (image coordinates, 1-based)")
    p.add_argument("--overwrite", action="store_true", help="overwrite output files")


def _safe(name):
    return name.replace("/", "_").replace(" ", "")


def product_paths(output, combinations, *, rmf=False, regions=None):
    """Option label -> output path of every product."""
    paths = {f"-o ({c})": f"{output}_{_safe(c)}.pha" for c in combinations}
    paths["-o (levels)"] = f"{output}_levels.ecsv"
    if rmf:
        paths["--rmf"] = f"{output}.rmf"
        paths["--rmf (arf)"] = f"{output}.arf"
    if regions:
        paths.update({f"--regions ({c})": f"{regions}_{_safe(c)}.reg" for c in combinations})
    return paths


def read_event_file(path):
    """Events and GTI; ``meta`` gains ``PI_TLMIN``/``PI_TLMAX`` of the ``PI`` column."""
    from astropy.io import fits

    from ..io.eventfile import read_events, read_gti
    events = read_events(path)
    if "PI" not in events.colnames or "STATUS" not in events.colnames:
        raise ValueError(f"{path}: the events have no PI or STATUS column; run xcrfilter "
                         "filter first.")
    with fits.open(os.fspath(path), memmap=False) as hdul:
        h = hdul["EVENTS"].header if "EVENTS" in hdul else hdul[1].header
        for i in range(1, int(h.get("TFIELDS", 0)) + 1):
            if str(h.get(f"TTYPE{i}", "")).upper() == "PI":
                for key in ("TLMIN", "TLMAX"):
                    if f"{key}{i}" in h:
                        events.meta[f"PI_{key}"] = int(h[f"{key}{i}"])
    return events, read_gti(path)


def _detector(meta):
    from ..meta import card_value
    from ..detector import DetectorModel
    wfi = DetectorModel.wfi()
    fano = card_value(meta, "FANO")
    noise = card_value(meta, "RDNOISE")
    pair = card_value(meta, "PAIRENER")
    return dict(fano=wfi.fano_factor if fano is None else float(fano),
                read_noise=wfi.readout_noise if noise is None else float(noise) * u.electron,
                pair_energy=(wfi.pair_energy if pair is None
                             else float(pair) * u.eV / u.electron))


def run(args):
    """Run ``xcrfilter spectrum``."""
    from ..io.outputs import check_outputs
    from ..io.spectra import (DEFAULT_BANDS, check_band, default_combinations, detector_area,
                          exposure_of, format_levels, parse_combination, pixel_size_of)

    bands = [check_band(lo, hi) for lo, hi in args.band] if args.band else DEFAULT_BANDS
    if args.regions:
        from ..io.spectrum_files import require_regions
        require_regions()  # before any file is written
    check_outputs({}, [args.events])
    events, gti = read_event_file(args.events)
    meta = events.meta
    combos = args.combination or default_combinations(meta)
    masks = {c: parse_combination(c, meta) for c in combos}
    paths = product_paths(args.output, combos, rmf=args.rmf, regions=args.regions)
    check_outputs(paths, [args.events], overwrite=args.overwrite)
    exposure = exposure_of(meta, exposure=args.exposure, frame_time=args.frame_time)
    pixel, pixel_from = pixel_size_of(meta, args.pixel_size)
    area = args.area if args.area is not None else detector_area(meta, pixel)
    hist = [f"xcrfilter spectrum of {os.path.basename(args.events)}: exposure {exposure:.6g}, "
            f"area {area:.6g} (pixel {pixel:g}, {pixel_from})"]
    _write_spectra(args, events, gti, masks, paths, exposure, area, hist)
    from ..io.spectra import background_levels
    levels = background_levels(events, combos, bands,
                               exposure=exposure, area=area)
    levels.meta.update(EVENTS=os.path.basename(args.events), PIXSIZE=pixel,
                       PIXFROM=pixel_from)
    from ..io.outputs import atomic_write
    with atomic_write(paths["-o (levels)"], overwrite=args.overwrite) as part:
        levels.write(part, format="ascii.ecsv", overwrite=True)
    print(f"{len(events)} events, exposure {exposure:.6g}, detector area {area:.4g} "
          f"(pixel {pixel:g}: {pixel_from})")
    for line in format_levels(levels):
        print(line)
    print("wrote " + ", ".join(paths.values()))
    return 0


def _write_spectra(args, events, gti, masks, paths, exposure, area, hist):
    from ..io import spectrum_files as sf
    from ..io.spectra import accepted, pi_channel_grid, pi_spectrum
    first, n, width = pi_channel_grid(events.meta)
    resp = anc = "NONE"
    if args.rmf:
        resp = os.path.basename(paths["--rmf"])
        anc = os.path.basename(paths["--rmf (arf)"])
        sf.write_hdulist(sf.response_hdulist(first, n, width, meta=events.meta,
                                             **_detector(events.meta)),
                         paths["--rmf"], overwrite=args.overwrite, history=hist)
        sf.write_hdulist(sf.arf_hdulist(first, n, width, area=area, meta=events.meta),
                         paths["--rmf (arf)"], overwrite=args.overwrite, history=hist)
    for combo, mask in masks.items():
        channels, counts = pi_spectrum(events, mask)
        hdul = sf.spectrum_hdulist(channels, counts, exposure=exposure, width=width,
                                   meta=events.meta, combination=combo, mask=mask,
                                   respfile=resp, ancrfile=anc, area=area, gti=gti)
        sf.write_hdulist(hdul, paths[f"-o ({combo})"], overwrite=args.overwrite,
                         history=hist + [f"{int(np.sum(counts))} events accepted by "
                                         f"{combo}"])
        if args.regions:
            sf.write_regions(events, accepted(events, mask), paths[f"--regions ({combo})"],
                             overwrite=args.overwrite)
