"""The ``xcrfilter filter`` command: find events and flag cosmic rays, file by file.

Its arguments (:func:`add_filter_parser`: the thresholds, the methods and
their ``--<filter>-*`` options from :mod:`xcrfilter.registry`, the
calibration, the outputs, the dask cluster) and what it runs: every input
opened and every output checked before any work, then each observation
(the inputs of ``-o``, or each input of ``--output-dir``) filtered by
:func:`xcrfilter.pipeline.run_pipeline` (image frames, a chunk at a time) or
through :mod:`xcrfilter.cli.sources` (event lists and pixel tables), written
as an OGIP event file with a summary of what each method rejects.  The
console script and the other sub-commands are in :mod:`xcrfilter.cli.main`.
"""
from __future__ import annotations

import argparse
import contextlib
import os

import astropy.units as u

from .argtypes import HelpFormatter, parse_energy, parse_gain, positive_int

__all__ = ["add_filter_parser"]


def _add_threshold_options(parser):
    g = parser.add_argument_group("event finding (thresholds of Poliszczuk et al., Sec. 3.1)")
    g.add_argument("--event-threshold", type=parse_energy, default=260 * u.eV,
                   metavar="E", help="minimum central-pixel energy of an event")
    g.add_argument("--split-threshold", type=parse_energy, default=80 * u.eV,
                   metavar="E", help="pixels at or above it are active and join the "
                   "event energy; 80eV is 3 sigma of the 7 e- readout noise")
    g.add_argument("--mip-threshold", type=parse_energy, default=10 * u.keV,
                   metavar="E", help="events at or above it are minimum-ionising particles")
    g.add_argument("--gain", type=parse_gain, default=None, metavar="G",
                   help="gain for frames in adu without a GAIN keyword, e.g. 3.65eV/adu "
                   "(bare numbers are eV/adu)")
    return g


def _fraction(text):
    from ..calibrate import parse_fraction
    if str(text).strip().lower() == "none":
        return "none"
    try:
        return parse_fraction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_filter_parser(sub):
    """Add the ``filter`` sub-command to the sub-parsers ``sub``; return its parser."""
    from .. import registry
    bits = "; ".join(f"{bit} {doc}" for bit, doc, _ in registry.status_bits().values())
    p = sub.add_parser(
        "filter", help="find events in FITS frames and flag cosmic-ray events",
        description="Find X-ray events in raw detector frames (2-D images or 3-D "
        "cubes frames x rows x columns, BUNIT eV/keV/electron/adu) and flag "
        "cosmic-ray induced events.  Every event is written to an OGIP event "
        f"file (EVENTS extension); nothing is dropped.  STATUS bits: {bits}.  An "
        "event is accepted by a method when its bits are 0.",
        formatter_class=HelpFormatter)
    p.add_argument("frames", nargs="+", metavar="FRAMES.fits",
                   help="input FITS file(s); cubes of several files are concatenated")
    p.add_argument("-m", "--method", default=None,
                   help="comma-separated filters: " + ", ".join(registry.FILTERS) + ", or all "
                   "(default: on frames vfaint,obsctx with --obsctx-shape on and "
                   "--obsctx-morph on, calibrated on the observation as --max-lost-xray "
                   "says; vfaint,sac on pixel tables; vfaint on event lists)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", metavar="EVENTS.fits",
                       help="output event file (several inputs are one observation: FRAME "
                       "counts on from file to file)")
    where.add_argument("--output-dir", metavar="DIR", default=None,
                       help="write one event file per input instead, DIR/NAME_events.fits "
                       "for NAME.fits; each input is its own observation (FRAME from 0)")
    p.add_argument("--mask-output", metavar="MASK.fits", default=None,
                   help="also write a compact mask file marking the 3x3 pixels of "
                   "rejected events (tile-compressed uint8 MASK extensions, one per chunk "
                   "of frames; no copy of the frames); image frames only, refused for event "
                   "lists and pixel tables")
    p.add_argument("--overwrite", action="store_true", help="overwrite output files")
    p.add_argument("--chunk-frames", type=int, default=200, metavar="N",
                   help="frames processed at a time (bounds memory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="filter chunks of frames in parallel on a local dask cluster "
                       "of N worker processes (needs dask.distributed)")
    scale.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="filter chunks of frames on an existing dask cluster, e.g. "
                       "tcp://host:8786 (started with 'dask scheduler' and 'dask worker'); "
                       "the workers must see the input files")
    p.add_argument("--max-lost-xray", type=_fraction, default=None, metavar="FRACTION",
                   help="calibrate the threshold of sac, cam, morph and obsctx (the SAC "
                   "radius) on this observation so that each loses this fraction of X-ray "
                   "events, e.g. 2%% or 0.02; see --calibration.  Default: 2%% on image "
                   "frames, where an observation too short to estimate it keeps the "
                   "filters' own thresholds with a warning (an explicit fraction is then "
                   "an error); 'none': no calibration (obsctx, whose only threshold is its "
                   "loss, still calibrates itself to 2%%)")
    p.add_argument("--calibration", choices=("shift", "injection"), default="shift",
                   help="how --max-lost-xray measures the loss: 'shift' places the "
                   "observation's own events into other frames of it, over the whole "
                   "observation; 'injection' injects simulated X-rays into the first "
                   "chunk of frames (default: %(default)s)")
    _add_threshold_options(p)
    from .sources import add_input_options
    add_input_options(p)
    registry.add_cli_options(p)
    p.set_defaults(func=_run_filter)
    return p


def _dask_client(args, stack):
    """A dask client for ``--workers N`` (a local cluster) or ``--scheduler ADDRESS``."""
    if not (args.workers or args.scheduler):
        return None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--workers and --scheduler need dask.distributed: "
                          "pip install 'dask[distributed]'") from None
    if args.scheduler:
        return stack.enter_context(Client(args.scheduler))
    cluster = stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                               processes=True, dashboard_address=None))
    return stack.enter_context(Client(cluster))


def _events_name(path):
    """``NAME_events.fits`` for an input ``NAME.fits`` (``--output-dir``)."""
    name = os.path.basename(os.fspath(path))
    for ext in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(ext):
            name = name[:-len(ext)]
            break
    return f"{name}_events.fits"


def _run_filter(args):
    from ..io.outputs import check_inputs, check_outputs
    from ..pipeline import parse_methods

    # None: the defaults of each input's kind (_default_methods)
    names = parse_methods(args.method) if args.method is not None else None
    for f in args.frames:
        if not os.path.exists(f):
            raise FileNotFoundError(f"input frames file {f} does not exist.")
    _check_max_lost_xray(args, names)
    if args.output_dir is None:
        jobs = {"-o/--output": (list(args.frames), args.output)}
    else:
        if args.mask_output or getattr(args, "cam_output", None):
            raise ValueError("--mask-output and --cam-output name one file: with --output-dir "
                             "(one event file per input) filter one input at a time for them.")
        if os.path.lexists(args.output_dir) and not os.path.isdir(args.output_dir):
            raise NotADirectoryError(f"--output-dir {args.output_dir} exists and is not a "
                                     "directory; name a directory (created when missing).")
        jobs = {f"--output-dir ({f})": ([f], os.path.join(args.output_dir, _events_name(f)))
                for f in args.frames}
    # every input readable and complete, and of a kind the options fit, before any work
    check_inputs(args.frames)  # no directory, device or FIFO is opened
    kinds = _check_inputs_readable(args, [frames for frames, _ in jobs.values()])
    if args.output_dir is not None:
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as exc:
            raise OSError(f"--output-dir {args.output_dir}: cannot create the directory "
                          f"({exc.strerror}).") from None
    # every output against every input and every other output, before any work
    check_outputs(dict({key: out for key, (_, out) in jobs.items()},
                       **{"--mask-output": args.mask_output,
                          "--cam-output": getattr(args, "cam_output", None)}),
                  args.frames, overwrite=args.overwrite)
    with contextlib.ExitStack() as stack:
        clients = []

        def client_of():
            # one dask cluster for all the inputs, started when first needed
            if not clients:
                clients.append(_dask_client(args, stack))
            return clients[0]

        for (frames, output), kind in zip(jobs.values(), kinds):
            _filter_observation(argparse.Namespace(**dict(vars(args), frames=frames,
                                                          output=output)), names, client_of,
                                kind)
    return 0


def _default_methods(kind):
    """The methods of ``filter`` without ``--method``, for an input of ``kind``.

    On image frames :data:`xcrfilter.pipeline.DEFAULT_METHODS` (very faint
    mode and the observation-trained context filter); on pixel-deposit
    tables, which hold particle showers only (no X-rays to learn their
    context from), very faint mode and SAC at its default radius; event
    lists hold no frames, so only vfaint runs there.
    """
    from ..pipeline import DEFAULT_METHODS
    return {"events": ["vfaint"], "pixels": ["vfaint", "sac"]}.get(kind, list(DEFAULT_METHODS))


def _method_options(args, names, defaulted):
    """Per-filter options of the run: the command line's, over
    :data:`xcrfilter.pipeline.DEFAULT_OPTIONS` when the methods are the default ones
    (:func:`xcrfilter.pipeline.default_options`)."""
    from ..pipeline import default_options
    from ..registry import options_from_args
    options = options_from_args(args, names)
    return default_options(names, options) if defaulted else options


def _max_lost_xray(args, names, kind):
    """``(max_lost_xray, calibration_fallback)`` of a run on ``kind`` with ``names``.

    Without ``--max-lost-xray``, image frames with a calibratable filter are
    calibrated to :data:`xcrfilter.pipeline.DEFAULT_MAX_LOST_XRAY` leniently
    (too short an observation keeps the default thresholds); an explicit
    fraction is strict; ``none`` turns calibration off.
    """
    from ..pipeline import DEFAULT_MAX_LOST_XRAY
    if args.max_lost_xray == "none":
        return None, False
    if args.max_lost_xray is not None:
        if kind != "frames":
            raise ValueError(f"--max-lost-xray calibrates on image frames; {args.frames[0]} "
                             f"is {'a pixel table' if kind == 'pixels' else 'an event list'}: "
                             "drop --max-lost-xray (the default thresholds apply).")
        return args.max_lost_xray, False
    if kind != "frames" or not _calibratable(names):
        return None, False
    return DEFAULT_MAX_LOST_XRAY, True


def _calibratable(names):
    """Whether any of the filters ``names`` has a threshold ``--max-lost-xray`` calibrates."""
    from ..registry import filter_spec
    return any(filter_spec(n).calibration is not None for n in names)


def _check_max_lost_xray(args, names):
    """``--max-lost-xray`` calibrates sac, cam, morph and obsctx: refuse it without any of them."""
    if args.max_lost_xray in (None, "none") or names is None:
        return
    if not _calibratable(names):
        raise ValueError(f"--max-lost-xray calibrates the filters with a threshold (sac, cam, "
                         f"morph, obsctx); -m {','.join(names)} has none of them: add one or drop "
                         "--max-lost-xray.")


def _check_inputs_readable(args, observations):
    """The input kind of each observation; every input file opened and checked first.

    Frames files are opened as `~xcrfilter.io.stream.FrameStream` (headers,
    sizes: a truncated file is found here), so that a bad second input of
    ``--output-dir`` fails before the first output is written.  Options that
    do not apply to the kind are refused (``--cam-output`` on pixel tables)
    or warned about (``--phas-order``/``--phas-unit`` on frames).
    """
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    from .sources import input_kind
    from ..io.stream import FrameStream
    kinds = []
    for frames in observations:
        kind = input_kind(frames)
        if kind == "frames":
            FrameStream(frames[0] if len(frames) == 1 else list(frames), gain=args.gain,
                        chunk_frames=args.chunk_frames, name="FRAMES")
            ignored = [opt for opt, value in (("--phas-order", args.phas_order),
                                              ("--phas-unit", args.phas_unit))
                       if value is not None]
            if ignored:
                warnings.warn(f"{' and '.join(ignored)} apply to event lists and pixel tables; "
                              f"ignored for the image frames of {frames[0]}.",
                              AstropyUserWarning, stacklevel=2)
        else:
            if args.mask_output:
                raise ValueError(f"--mask-output needs image frames; {frames[0]} is a "
                                 f"{'pixel table' if kind == 'pixels' else 'event list'}.")
            if kind == "pixels" and getattr(args, "cam_output", None):
                raise ValueError(f"--cam-output needs image frames; {frames[0]} is a pixel "
                                 "table (frames of several chips): filter without "
                                 "--cam-output.")
        kinds.append(kind)
    return kinds


def _filter_observation(args, names, client_of, kind):
    """Filter ``args.frames`` (input ``kind``) as one observation into ``args.output``."""
    from ..io.eventfile import write_events
    from ..meta import set_card
    from ..pipeline import run_pipeline
    from .sources import filter_table_input, frame_pipeline_options
    defaulted = names is None
    if defaulted:
        names = _default_methods(kind)
    max_lost_xray, fallback = _max_lost_xray(args, names, kind)
    if kind != "frames":
        # event list or pixel-deposit table (xcrfilter.cli.sources)
        events = filter_table_input(kind, args, names, _method_options(args, names, defaulted))
        write_events(events, args.output, overwrite=args.overwrite,
                     input_files=list(args.frames))
        _print_summary(events, names, args.output)
        return 0
    from ..io.stream import FrameStream
    source = args.frames[0] if len(args.frames) == 1 else list(args.frames)
    # frames are read a chunk at a time: memory does not grow with the input
    stream = FrameStream(source, gain=args.gain, chunk_frames=args.chunk_frames,
                         name="FRAMES")
    pipeline_options = frame_pipeline_options(args, args.frames, stream.n_frames,
                                              stream.header)
    with contextlib.ExitStack() as stack:
        on_chunk = None
        if args.mask_output:
            from ..io.maskfile import MaskWriter
            on_chunk = stack.enter_context(MaskWriter(
                args.mask_output, stream.frame_shape, overwrite=args.overwrite)).add
        client = client_of()
        events = run_pipeline(stream, names, event_threshold=args.event_threshold,
                              split_threshold=args.split_threshold,
                              mip_threshold=args.mip_threshold,
                              options=_method_options(args, names, defaulted),
                              chunk_frames=args.chunk_frames, progress=not args.quiet,
                              max_lost_xray=max_lost_xray, calibration_fallback=fallback,
                              calibration=args.calibration, client=client,
                              on_chunk=on_chunk, **pipeline_options)
    if len(stream.filenames) > 1:
        for i, first in enumerate(stream.offsets[:-1][:99], start=1):
            set_card(events.meta, f"INFRM{i:02d}", int(first),
                     f"first FRAME of input file {i} (INFILE{i:02d})")
    write_events(events, args.output, overwrite=args.overwrite,
                 input_files=list(args.frames))
    _print_summary(events, names, args.output)
    return 0


def _print_summary(events, names, output):
    import numpy as np

    from ..registry import method_bits
    status = np.asarray(events["STATUS"])
    print(f"{len(events)} events written to {output}")
    for name in names:
        nrej = int(np.count_nonzero(status & method_bits(name)))
        print(f"  {name:9s} rejects {nrej:7d}  accepts {len(events) - nrej:7d}")
    print(f"  all       accepts {int(np.count_nonzero(status == 0)):7d}")
    from ..io.spectra import level_lines
    for line in level_lines(events):
        print(line)
