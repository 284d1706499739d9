"""The inputs ``xcrfilter filter`` takes, and their options.

``xcrfilter filter`` accepts three kinds of FITS input, told apart by content:

frames
    Images or cubes (BUNIT eV, keV, electron or adu): events are found, then
    filtered (:func:`xcrfilter.pipeline.run_pipeline`).
event list
    A binary table with a 25-value ``PHAS`` column (the ``EVENTS`` table, else
    the first binary table): filtered in event-list mode
    (:mod:`xcrfilter.io.eventlist`); only the very-faint-mode filter applies.
pixel-deposit table
    A binary table with ``FRAME``, ``ENERGY`` and pixel coordinates but no
    ``PHAS`` (Geant4 background simulations): streamed a group of frames at
    a time (:mod:`xcrfilter.io.geant4`, :mod:`xcrfilter.io.geant4_filter`).
"""
from __future__ import annotations

import argparse
import os
import warnings

import astropy.units as u
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["add_input_options", "parse_time", "input_kind", "frame_pipeline_options",
           "filter_table_input"]


def parse_time(text):
    """Parse ``"5ms"``, ``"0.005 s"`` or a bare number (s) into a time Quantity."""
    try:
        q = u.Quantity(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; write e.g. 5ms") from None
    if q.unit == u.dimensionless_unscaled:
        q = q.value * u.s
    try:
        q = q.to(u.s)
    except u.UnitConversionError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time (unit {q.unit})") from None
    if not q.value > 0:
        raise argparse.ArgumentTypeError(f"the frame time must be positive, got {text!r}")
    return q


def _energy_unit(text):
    try:
        unit = u.Unit(str(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit; write eV or keV") from None
    if not unit.is_equivalent(u.eV):
        raise argparse.ArgumentTypeError(f"{text!r} is not an energy unit; write eV or keV")
    return unit


def _chips(text):
    """``--chips``: a chip geometry, parsed when the command line is read."""
    from ..io.geant4 import ChipGeometry
    try:
        return ChipGeometry.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_input_options(parser):
    """Options of the input kinds and of the OGIP output (added to ``xcrfilter filter``)."""
    g = parser.add_argument_group("input formats and event-file time")
    g.add_argument("--frame-time", type=parse_time, default=None, metavar="T",
                   help="frame time, e.g. 5ms; default the TIMEDEL, FRAMTIME or TEXPFRAM "
                   "keyword of the input (TIME = TSTART + FRAME x frame time)")
    g.add_argument("--strict-thresholds", action="store_true",
                   help="a seed must be above the event threshold and an active pixel "
                   "above the split threshold (> instead of >=)")
    g.add_argument("--edge-status", action="store_true",
                   help="set STATUS bit 8 (EDGE) on events whose 5x5 island is cut by the "
                   "frame edge")
    g.add_argument("--phas-order", choices=("row-major", "centre-first"), default=None,
                   help="event lists: order of the 25 PHAS values (centre-first: centre, "
                   "3x3 ring, outer 16, each row-major; default row-major)")
    g.add_argument("--phas-unit", type=_energy_unit, default=None, metavar="UNIT",
                   help="event lists and pixel tables: unit (eV or keV) of energy columns "
                   "without TUNIT")
    g.add_argument("--chips", type=_chips, default=None, metavar="SPEC",
                   help="pixel tables: chip geometry, 'wfi-geant4' or "
                   "'ROWSxCOLS:x0,y0;x0,y0;...' (default CHIPXn/CHIPYn keywords)")
    from .argtypes import positive_int
    g.add_argument("--group-frames", type=positive_int, default=16, metavar="N",
                   help="pixel tables: frames made dense at a time")
    return g


def input_kind(paths):
    """``"frames"``, ``"events"`` or ``"pixels"`` for the input file(s).

    Raises
    ------
    ValueError
        If several files are given and one of them is a table.
    """
    from ..io.eventlist import is_event_list
    from ..io.geant4 import is_pixel_table
    kinds = []
    for p in paths:
        kinds.append("events" if is_event_list(p) else "pixels" if is_pixel_table(p)
                     else "frames")
    if len(paths) > 1 and set(kinds) != {"frames"}:
        raise ValueError("-o/--output takes one event list or pixel table at a time (frames "
                         "files can be several); use --output-dir DIR to filter several, one "
                         "event file each.")
    return kinds[0]


def frame_pipeline_options(args, paths, n_frames, header):
    """``run_pipeline`` keywords of the frames kind: thresholds style, time, frame times."""
    from ..io.timing import frame_time_from_header, read_frame_times
    frame_times = read_frame_times(paths[0], n_frames) if len(paths) == 1 else None
    if frame_times is None and frame_time_from_header(header, args.frame_time) is None:
        warnings.warn("no frame time (TIMEDEL, FRAMTIME or TEXPFRAM keyword): the event "
                      "file has no TIME column and no GTI; give --frame-time.",
                      AstropyUserWarning, stacklevel=2)
    return dict(strict=args.strict_thresholds, edge_status=args.edge_status,
                frame_time=args.frame_time, frame_times=frame_times)


def filter_table_input(kind, args, names, method_options):
    """Events of an event list or a pixel-deposit table, filtered by ``names``.

    Raises
    ------
    ValueError
        For an event list and a filter other than vfaint (the others need
        the frames).
    """
    path = os.fspath(args.frames[0])
    if kind == "events":
        from ..io.eventlist import filter_event_list, read_event_list
        other = [n for n in names if n != "vfaint"]
        if other:
            raise ValueError(f"{path} is an event list: only the vfaint filter runs on "
                             f"event lists ({', '.join(other)} "
                             f"{'needs' if len(other) == 1 else 'need'} the frames).")
        events = read_event_list(path, phas_order=args.phas_order or "row-major",
                                 phas_unit=args.phas_unit)
        return filter_event_list(events, event_threshold=args.event_threshold,
                                 split_threshold=args.split_threshold,
                                 mip_threshold=args.mip_threshold,
                                 strict=args.strict_thresholds, frame_time=args.frame_time)
    from ..io.geant4_filter import filter_pixel_table
    return filter_pixel_table(path, names, geometry=args.chips,
                              group_frames=args.group_frames, energy_unit=args.phas_unit,
                              frame_time=args.frame_time,
                              event_threshold=args.event_threshold,
                              split_threshold=args.split_threshold,
                              mip_threshold=args.mip_threshold, options=method_options,
                              strict=args.strict_thresholds, edge_status=args.edge_status)
