"""Compose the filters: frames -> events -> STATUS bits, in one pass.

The data flow is one way: frames are converted once to an
energy cube, events are found once, and every requested filter sets its own
STATUS bit (and columns such as ``PROB_CR``) on a new copy of the events
table.  Filters never call each other.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Mapping

import astropy.units as u
import numpy as np
from astropy.table import vstack

from . import registry
from .meta import add_history, card_comment, set_card
from .calibrate import write_calibration_cards
from .calibrate.frameshift import apply_shift_calibration
from .calibrate.injection import calibrate
from .events import check_thresholds
from .execution import collect, dask_results, serial_results
from .io.frames import FrameCube, as_energy_cube
from .io.timing import add_time
from .io.outputs import check_api_output
from .io.stream import FrameStream

__all__ = ["METHODS", "DEFAULT_METHODS", "DEFAULT_OPTIONS", "DEFAULT_MAX_LOST_XRAY",
           "default_options", "available_methods", "parse_methods", "load_method", "run_pipeline"]

#: Filter name -> module declaring it (:data:`xcrfilter.registry.FILTERS`).
METHODS = registry.FILTERS

#: Methods of ``xcrfilter filter`` without ``--method`` on image frames: the
#: very-faint-mode filter and the observation-trained context filter, with
#: :data:`DEFAULT_OPTIONS`.  Of the context methods it holds best on
#: physics that no model of this package saw (the leave-one-physics-out
#: and out-of-range checks of the docs: *Learning from the observation*,
#: "Defaults"); too short an observation falls back to SAC's radius.
DEFAULT_METHODS = ("vfaint", "obsctx")

#: Options of :data:`DEFAULT_METHODS` when they run by default: ``obsctx``
#: multiplies its learnt context odds by the shape ratio of the shipped
#: shape-only model and averages that ranking with the shipped ``morph``
#: model's in log odds; the observation keeps the average unless that
#: ranking, the track distance or ``morph`` alone rejects significantly more.
DEFAULT_OPTIONS = {"obsctx": {"shape": "on", "morph": "on"}}


def default_options(names, given=None):
    """Per-filter options of a run with the default methods: ``given`` over
    :data:`DEFAULT_OPTIONS`.

    A given ``obsctx`` shape option that is off also turns the default morph
    ranking off (it needs the shape).

    Parameters
    ----------
    names : sequence of str
        The filters of the run.
    given : dict, optional
        ``{name: {option: value}}`` the user gave (values as the filters take
        them: ``shape`` as a bool or ``'on'``/``'off'``).

    Returns
    -------
    dict
        ``{name: {option: value}}`` for the filters with any option.
    """
    given = given or {}
    options = {}
    for name in names:
        mine = dict(given.get(name, {}))
        merged = {**DEFAULT_OPTIONS.get(name, {}), **mine}
        if name == "obsctx" and mine.get("shape") in (False, "off") and "morph" not in mine:
            merged.pop("morph", None)
        if merged:
            options[name] = merged
    return options


#: Lost X-ray fraction the command line calibrates every context filter to
#: when ``--max-lost-xray`` is not given (by frame shift, leniently: see
#: ``calibration_fallback`` of :func:`run_pipeline`).
DEFAULT_MAX_LOST_XRAY = 0.02


def load_method(name):
    """The :class:`~xcrfilter.contract.Filter` declaration of filter ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a known method.
    ImportError
        If the module cannot be imported (e.g. a missing optional dependency).
    """
    return registry.filter_spec(name)


def available_methods():
    """Names of the filters usable on this installation.

    A filter is usable when its module imports and it is available
    (:meth:`~xcrfilter.contract.Filter.available`: the CAM and morph
    filters need their shipped models).
    """
    names = []
    for name in METHODS:
        try:
            spec = load_method(name)
        except ImportError:
            continue
        if spec.available():
            names.append(name)
    return names


def parse_methods(spec):
    """Turn ``"vfaint,cam"`` / ``"all"`` / a list into a list of method names.

    Raises
    ------
    TypeError
        For anything but a string or a list of strings (None, a number).
    ValueError
        For an empty list or an unknown name.
    """
    if isinstance(spec, str):
        items = [s.strip().lower() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, (list, tuple)) and all(isinstance(s, str) for s in spec):
        items = [s.strip().lower() for s in spec]
    else:
        raise TypeError("methods must be a filter name, a comma-separated string such as "
                        f"'vfaint,sac' or a list of names, got {spec!r}.")
    if not items:
        raise ValueError("method: give at least one filter method, e.g. 'vfaint' or 'all'.")
    if "all" in items:
        return available_methods()
    out = []
    for name in items:
        if name not in METHODS:
            raise ValueError(f"method: unknown filter {name!r}; choose from "
                             f"{', '.join(METHODS)} or 'all'.")
        if name not in out:
            out.append(name)
    return out


def _start_filters(specs, options):
    """Let each filter open what it writes over a run (``start_run``) in its options."""
    for name, spec in specs.items():
        if spec.start_run is not None:
            options[name] = spec.start_run(options.get(name))


def _finish_filters(specs, options, ok):
    """Let each filter close what it writes over a run (``finish_run``), or drop it."""
    for name, spec in specs.items():
        if spec.finish_run is not None:
            spec.finish_run(options.get(name), ok=ok)


def _check_options(options, names):
    """``options`` as a new dict of dicts, checked against the methods ``names``.

    Raises
    ------
    TypeError
        ``options`` is not a dict, or the options of a method are not a dict.
    ValueError
        Options of an unknown method, or of a method that does not run.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError("options must be a dict of method name to a dict of keyword "
                        f"arguments, e.g. {{'sac': {{'radius': 10}}}}, got {options!r}.")
    unknown = sorted(set(options) - set(METHODS))
    if unknown:
        raise ValueError(f"options: unknown method(s) {unknown}; choose from "
                         f"{', '.join(METHODS)}.")
    for name, opts in options.items():
        if opts is not None and not isinstance(opts, Mapping):
            raise TypeError(f"options[{name!r}] must be a dict of keyword arguments of the "
                            f"{name} filter, got {opts!r}.")
    unused = [name for name in options if name not in names]
    if unused:
        given = "; ".join(f"options[{n!r}] = {sorted(options[n] or {})}" for n in unused)
        raise ValueError(f"options for method(s) that do not run: {given} (methods: "
                         f"{', '.join(names)}); add them to methods or drop their options.")
    return {name: dict(opts or {}) for name, opts in options.items()}


def run_pipeline(frames, methods=("vfaint",), *, event_threshold=260 * u.eV,
                 split_threshold=80 * u.eV, mip_threshold=10 * u.keV, gain=None,
                 detector=None, options=None, chunk_frames=200, progress=False,
                 strict=False, edge_status=False, frame_time=None, frame_times=None,
                 max_lost_xray=None, calibration="shift", calibration_fallback=False,
                 client=None, on_chunk=None, max_active_pixels=None, seed=0):
    """Find events in ``frames`` and apply the requested filters.

    Parameters
    ----------
    frames : frames, an iterator of them, or a `~xcrfilter.io.stream.FrameStream`
        Any input of :func:`xcrfilter.io.frames.as_energy_cube`:
        One frame (ny, nx) or a cube (n_frames, ny, nx), or FITS file(s).
        FITS files are read a chunk at a time
        (:class:`~xcrfilter.io.stream.FrameStream`), several files as one
        observation.
        An iterator (e.g. a generator) yields consecutive blocks of frames
        that are processed as they come, so that a stream of frames never
        has to fit in memory; ``FRAME`` then counts over all blocks.
    methods : str or sequence of str, optional
        Filter names (``vfaint``, ``lacosmic``, ``sac``, ``cam``) or
        ``"all"``; a comma-separated string is accepted.  Default vfaint.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event-finding thresholds shared by every filter (defaults 260 eV,
        80 eV, 10 keV; seed paper Sec. 3.1).
    gain : `~astropy.units.Quantity` [energy / adu], optional
        For frames in adu without a ``GAIN`` keyword.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Detector constants (pair energy, readout noise).  Default WFI.
    options : dict, optional
        Per-method keyword arguments, e.g. ``{"sac": {"radius": 10}}``.
    chunk_frames : int, optional
        Frames processed per step (bounds memory; default 200).  FITS files
        are read in chunks of at most
        ``xcrfilter.io.stream.DEFAULT_CHUNK_PIXELS`` pixels as well.
    progress : bool, optional
        Show a tqdm progress bar over frames.
    seed : int, optional
        Random seed of the calibration samples.  Default 0.
    strict : bool, optional
        Strict thresholds (``>`` instead of ``>=``), see
        :func:`~xcrfilter.events.find_events`.  Default False.
    edge_status : bool, optional
        Set STATUS bit ``EDGE`` on events cut by the frame edge.  Default False.
    frame_time : `~astropy.units.Quantity` [time], optional
        Frame time; default the ``TIMEDEL``/``FRAMTIME``/``TEXPFRAM`` keyword
        of the input header.
    frame_times : `~astropy.units.Quantity` [time], shape (n_frames,), optional
        Start time of every frame.
    max_lost_xray : float, optional
        Fraction of X-ray events (e.g. 0.02) that each context filter
        (``sac``, ``cam``, ``morph``) may reject.  Its threshold (radius for
        SAC) is then calibrated on the observation, overriding the default
        or given one (see ``calibration``).  The header records the method,
        the value, the estimated fraction and its 68 % interval, and the
        events behind it (``<XXX>CALM``, ``<XXX>CALV``, ``<XXX>CALF``,
        ``<XXX>CALLO``, ``<XXX>CALHI``, ``<XXX>CALN``, and ``<XXX>CALS``
        the frame shifts; ``XXX`` is ``SAC``, ``CAM`` or ``MRP``).
        Default None: no calibration.
    calibration : {"shift", "injection"}, optional
        ``"shift"`` (default): the loss is estimated from the events of the
        whole observation placed into other frames of it
        (:func:`xcrfilter.calibrate.frameshift.shifted_scores`), and the threshold is
        applied at the end of the run; fewer than
        :data:`xcrfilter.calibrate.MIN_REJECTED` rejected events in the
        sample at the asked fraction is an error.  ``"injection"``:
        simulated X-rays injected into the first chunk of frames
        (:func:`xcrfilter.calibrate.injection.calibrate`).
    calibration_fallback : bool, optional
        What an observation too short for a frame-shift estimate of
        ``max_lost_xray`` does.  False (default): a `ValueError` that says
        how many events are needed.  True: the filter keeps its default (or
        given) threshold, with a warning, a HISTORY line and
        ``<XXX>CALM = 'NONE'`` (the command line's default calibration,
        :data:`DEFAULT_MAX_LOST_XRAY`, is applied this way).
    client : `distributed.Client`, optional
        Run every chunk of frames as a task on this dask cluster (e.g.
        ``Client(LocalCluster(n_workers=2))`` or ``Client("tcp://host:8786")``).
        FITS inputs are read by the workers, which must see the files; each
        worker loads a model once.  The verdicts are identical to a run
        without a client (the calibration, if any, runs here on the first
        chunk).  ``cam_output`` is not supported.  Default None: run here.
    on_chunk : callable, optional
        Called as ``on_chunk(first_frame, n_frames, events)`` for each
        processed piece of frames, in frame order, e.g. to write a mask per
        chunk.  ``FRAME`` of ``events`` counts over the whole input.
    max_active_pixels : int, optional
        Largest number of pixels at or above ``event_threshold`` processed
        at once; chunks of frames holding more are split (bounds memory on
        saturated frames).  Default ``MAX_ACTIVE_PIXELS`` (1,000,000).

    Returns
    -------
    events : `~astropy.table.QTable`
        Every event found, with the STATUS bits of every method that ran,
        ``FRAME`` indices over the whole input, and the filters' header
        keywords and HISTORY in ``meta`` (``FILTERS`` lists the methods).
        The observation keywords of the input header (``TELESCOP``,
        ``INSTRUME``, ``DETNAM``, ``DATE-OBS``, ``OBJECT``, time keywords)
        are carried into ``meta``; when a frame time is known, a ``TIME``
        column, the OGIP time and exposure keywords and ``meta['GTI']`` are
        added (:func:`xcrfilter.io.timing.add_time`).

    Raises
    ------
    ValueError, TypeError
        For bad frames, thresholds, method names or options.
    """
    names = parse_methods(methods)
    options = _check_options(options, names)
    for name, opts in options.items():
        load_method(name).check_options(opts)
    check_thresholds(event_threshold, split_threshold, mip_threshold)
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, numbers.Integral):
        raise TypeError(f"chunk_frames must be a positive integer, got {chunk_frames!r}.")
    if int(chunk_frames) < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}.")
    specs = {name: load_method(name) for name in names}
    if client is not None:
        for name, spec in specs.items():
            for param in spec.output_options(options.get(name)):
                raise ValueError(f"{param} ({name} filter) is written by one process: run "
                                 "without a dask client to write it.")
    for name, spec in specs.items():
        # an output the run writes is never one of its inputs (as on the command line)
        opts = options.get(name) or {}
        for param in spec.output_options(opts):
            check_api_output(f"options[{name!r}][{param!r}]", opts[param], frames,
                             overwrite=bool(opts.get("overwrite")))
    _start_filters(specs, options)
    # the inputs every filter may ask for (Filter.shared)
    common = dict(event_threshold=event_threshold, split_threshold=split_threshold,
                  mip_threshold=mip_threshold, detector=detector, strict=bool(strict))
    total = None
    if isinstance(frames, (str, os.PathLike)) or (
            isinstance(frames, (list, tuple)) and frames
            and all(isinstance(f, (str, os.PathLike)) for f in frames)):
        # FITS files: read a chunk at a time, never the whole input
        frames = FrameStream(frames, gain=gain, detector=detector,
                             chunk_frames=int(chunk_frames))
    if isinstance(frames, FrameStream):
        total = frames.n_frames
    elif not isinstance(frames, Iterator):
        frames = frames if isinstance(frames, FrameCube) else as_energy_cube(
            frames, gain=gain, detector=detector, name="frames")
        total = frames.data.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, unit="frame", desc="filtering")
    parts = []
    counts = {}
    count_cards = {key: name for name, spec in specs.items() for key in spec.count_cards}
    state = dict(header=None, meta=None, n=0, n_masked=0, samples={}, pieces=[])
    calibrated = {}
    # filters that learn from the whole observation, and those calibrated on it
    observers = [name for name, spec in specs.items() if spec.observe is not None]
    to_calibrate = [] if max_lost_xray is None else [
        name for name, spec in specs.items()
        if spec.calibration is not None and name not in observers]
    if calibration not in ("shift", "injection"):
        raise ValueError(f"calibration must be 'shift' or 'injection', got {calibration!r}.")
    if not isinstance(calibration_fallback, bool):
        raise TypeError(f"calibration_fallback must be True or False, got "
                        f"{calibration_fallback!r}.")
    shift = None
    if observers or (to_calibrate and calibration == "shift"):
        shift = dict(names=to_calibrate if calibration == "shift" else [],
                     observers=observers, seed=int(seed), total=total)
        # the threshold is known at the end of the run: the chunks are handed
        # to on_chunk then, with their final verdicts
        deferred, on_chunk = on_chunk, None

    def calibrate_on(sub):
        if to_calibrate and calibration == "injection":
            for name in to_calibrate:
                options[name], calibrated[name] = calibrate(
                    specs[name], sub, common, options.get(name), float(max_lost_xray))

    work = dict(gain=gain, strict=strict, edge_status=edge_status,
                max_active=max_active_pixels, shift=shift)
    if client is None:
        results = serial_results(frames, int(chunk_frames), names, common, options, work,
                                 calibrate_on, gain, detector)
    else:
        results = dask_results(client, frames, int(chunk_frames), names, common, options,
                               work, calibrate_on, gain, detector)
    try:
        collect(results, on_chunk, bar, parts, counts, count_cards, state)
    except BaseException:
        if bar is not None:
            bar.close()  # an error message then starts on a line of its own
        _finish_filters(specs, options, ok=False)
        raise
    _finish_filters(specs, options, ok=True)
    header, meta, n, n_masked = state["header"], state["meta"], state["n"], state["n_masked"]
    if bar is not None:
        bar.close()
    if not parts:
        raise ValueError("frames: no frames given.")
    out = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    history = meta.pop("HISTORY", [])
    out.meta.update(meta)
    set_card(out.meta, "NFRAMES", int(n), "number of frames searched")
    set_card(out.meta, "NMASKED", n_masked, "masked or non-finite pixels (never in events)")
    set_card(out.meta, "FILTERS", ",".join(names), "filters applied (STATUS bits)")
    for key, total in counts.items():
        # count cards of the plug-ins hold per-chunk numbers: write totals
        set_card(out.meta, key, total, card_comment(out.meta, key))
    before = len(out.meta.get("HISTORY", []))
    if shift:
        for name in observers:
            rep = specs[name].conclude(out, state["samples"].get(name, []),
                                       max_lost=max_lost_xray,
                                       required=(max_lost_xray is not None
                                                 and not calibration_fallback),
                                       seed=int(seed))
            if rep is not None:
                calibrated[name] = rep
        apply_shift_calibration(out, {n: specs[n] for n in shift["names"]},
                                state["samples"], float(max_lost_xray or 0), calibrated,
                                fallback=calibration_fallback)
        if deferred is not None:
            frame_col = np.asarray(out["FRAME"])
            for start, n_piece in state["pieces"]:
                deferred(start, n_piece,
                         out[(frame_col >= start) & (frame_col < start + n_piece)])
    learnt = list(out.meta.get("HISTORY", []))[before:]   # what the learning filters said
    status = np.asarray(out["STATUS"])
    if len(parts) == 1 and not shift:
        out.meta["HISTORY"] = history
    else:
        # per-chunk HISTORY lines carry per-chunk counts: record totals instead
        out.meta["HISTORY"] = []
        add_history(out.meta, f"find_events: {len(out)} events in {n} frames "
                              f"(processed in chunks of at most {int(chunk_frames)} frames)")
        for name in names:
            nrej = int(np.count_nonzero(status & registry.method_bits(name)))
            add_history(out.meta, f"{name}: {nrej} of {len(out)} events rejected")
        out.meta["HISTORY"].extend(learnt)
    write_calibration_cards(out.meta, specs, calibrated)
    # observation and time keywords: header of the (last) input block
    add_time(out, header, frame_time=frame_time, frame_times=frame_times, n_frames=n,
             warn=False)
    return out
