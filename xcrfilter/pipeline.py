"""Compose the filters: frames -> events -> STATUS bits, in one pass.

The data flow is one way: frames are converted once to an
energy cube, events are found once, and every requested filter sets its own
STATUS bit (and columns such as ``PROB_CR``) on a new copy of the events
table.  Filters never call each other.
"""
from __future__ import annotations

import numbers
import os
import warnings
from collections import deque
from collections.abc import Iterator, Mapping

import astropy.units as u
import numpy as np
from astropy.table import vstack
from astropy.utils.exceptions import AstropyUserWarning

from . import registry
from .meta import add_history, card_comment, card_value, set_card
from .calibrate import write_calibration_cards
from .events import check_thresholds, find_events
from .io.frames import FrameCube, as_energy_cube
from .io.ogip import add_time
from .io.stream import FrameStream

__all__ = ["METHODS", "DEFAULT_METHODS", "DEFAULT_MAX_LOST_XRAY", "available_methods",
           "parse_methods", "load_method", "run_pipeline"]

#: Filter name -> module declaring it (:data:`xcrfilter.registry.FILTERS`).
METHODS = registry.FILTERS

#: Methods of ``xcrfilter filter`` without ``--method`` on image frames: the
#: very-faint-mode filter and self-anti-coincidence, whose one number (the
#: radius) the observation itself calibrates.  On frames of physics that no
#: model of this package saw, SAC at that radius trails the best method by
#: at most 1.6 points and the trained context models by up to 5.3 (docs:
#: *Learning from the observation*, "Defaults").
DEFAULT_METHODS = ("vfaint", "sac")

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


def _slice_cube(cube, start, stop):
    mask = None if cube.mask is None else cube.mask[start:stop]
    return FrameCube(cube.data[start:stop], mask, cube.header, cube.filenames, False)


def _chunks(frames, chunk_frames, gain, detector):
    """Yield ``(first_frame, FrameCube)`` of at most ``chunk_frames`` frames.

    ``frames`` is one FrameCube, a `~xcrfilter.io.stream.FrameStream` or an
    iterator of blocks of frames.
    """
    blocks = [frames] if isinstance(frames, FrameCube) else frames
    first = 0
    for block in blocks:
        cube = block if isinstance(block, FrameCube) else as_energy_cube(
            block, gain=gain, detector=detector, name="frames")
        n = cube.data.shape[0]
        for start in range(0, n, chunk_frames):
            yield first + start, _slice_cube(cube, start, min(n, start + chunk_frames))
        first += n


#: Largest number of active pixels (above the event threshold) handed to the
#: event finder and the filters at once: a fully saturated 512 x 512 frame
#: has 262,144.  Bounds memory on bad frames.
MAX_ACTIVE_PIXELS = 1_000_000
_ROW_STEP = 4


def _work_pieces(cube, event_threshold, max_active=None):
    """Split ``cube`` into ``(offset, FrameCube)`` pieces of bounded work.

    A piece holds consecutive frames with at most ``max_active`` pixels at or
    above ``event_threshold`` in total (at least one frame), so that frames
    full of charge (saturation, a flare of cosmic rays) never meet in one
    piece.  Results do not depend on the split: events are found and judged
    frame by frame.
    """
    max_active = MAX_ACTIVE_PIXELS if max_active is None else int(max_active)
    n = cube.data.shape[0]
    thr = np.float32(event_threshold.to_value(u.eV))
    # estimated from every 4th row (a quarter of the cost of the exact count;
    # the bound is on memory, it need not be exact)
    rows = cube.data[:, ::_ROW_STEP]
    active = np.count_nonzero(rows >= thr, axis=(1, 2)) * _ROW_STEP
    if active.sum() <= max_active:
        return [(0, cube)]
    pieces, a, work = [], 0, 0
    for i in range(n):
        if i > a and work + active[i] > max_active:
            pieces.append((a, _slice_cube(cube, a, i)))
            a, work = i, 0
        work += int(active[i])
    pieces.append((a, _slice_cube(cube, a, n)))
    return pieces


def _process_chunk(sub, start, names, common, options, *, gain, strict, edge_status,
                   max_active=None, shift=None):
    """Events of one chunk, filtered.

    Returns ``(n_masked, pieces, shifted)``: the masked pixels of the chunk,
    a list of ``(first_frame, n_frames, events)`` (``FRAME`` of the events
    counts from ``start``, the chunk's first frame in the whole input, and
    each table keeps the ``meta`` its filters wrote), and for each filter
    named in ``shift["names"]`` its frame-shift sample ``(scores,
    n_events)`` (:func:`xcrfilter.calibrate.shifted_scores`).
    """
    specs = {name: load_method(name) for name in names}
    out = []
    shifted = {}
    for offset, piece in _work_pieces(sub, common["event_threshold"], max_active):
        events = find_events(piece, common["event_threshold"], common["split_threshold"],
                             common["mip_threshold"], gain=gain, strict=strict,
                             edge_status=edge_status)
        if shift:
            _shift_sample(shifted, piece, events, start + offset, specs, common, options,
                          shift)
        for name, spec in specs.items():
            try:
                events = spec.run(piece, events, common, options.get(name))
            except Exception as exc:
                exc.add_note(f"xcrfilter: raised by the {name!r} filter")
                raise
        events["FRAME"] += np.int32(start + offset)
        out.append((start + offset, piece.data.shape[0], events))
    n_masked = int(np.count_nonzero(sub.mask)) if sub.mask is not None else 0
    return n_masked, out, shifted


def _shift_sample(samples, piece, events, first, specs, common, options, shift):
    """Add the frame-shift samples of ``piece`` (first frame ``first``) to ``samples``.

    Filters calibrated by frame shift add ``(scores, n_events)``; filters
    that learn from the observation (:attr:`~xcrfilter.contract.Filter.observe`)
    add what they observe.
    """
    from .calibrate import MAX_SHAPE_PER_FRAME, MAX_SHAPE_SAMPLE, shifted_scores
    n = piece.data.shape[0]
    total = shift.get("total")
    cap = MAX_SHAPE_PER_FRAME * n
    if total:
        cap = min(cap, int(np.ceil(MAX_SHAPE_SAMPLE * n / total)))
    for name in shift["names"]:
        rng = np.random.default_rng([int(shift["seed"]), int(first), len(name)])
        samples.setdefault(name, []).append(shifted_scores(
            specs[name], piece, events, common, options.get(name), rng=rng,
            max_shape_events=cap))
    for name in shift["observers"]:
        samples.setdefault(name, []).append(specs[name].observe(
            piece, events, common, options.get(name), first=first))


def _stream_task(stream, start, stop, *args, **kwargs):
    """Dask task: read frames ``start:stop`` of ``stream`` and process them."""
    return _process_chunk(stream.read(start, stop), start, *args, **kwargs)


def _chunk_task(sub, start, *args, **kwargs):
    """Dask task: process a chunk of frames shipped to the worker."""
    return _process_chunk(sub, start, *args, **kwargs)


def _serial_results(frames, chunk_frames, names, common, options, work, calibrate_on, gain,
                    detector):
    """``(header, result of _process_chunk)`` of every chunk, computed here."""
    for start, sub in _chunks(frames, chunk_frames, gain, detector):
        if start == 0:
            calibrate_on(sub)
        yield sub.header, _process_chunk(sub, start, names, common, options, **work)


def _dask_results(client, frames, chunk_frames, names, common, options, work, calibrate_on,
                  gain, detector):
    """The same as :func:`_serial_results`, each chunk a task on a dask cluster.

    Results come back in frame order; at most two tasks per worker (plus
    two) are in flight, so that neither the workers nor this process hold
    more than a few chunks.  Frames of a `~xcrfilter.io.stream.FrameStream` are
    read by the workers (the files must be visible to them); other frames
    are sent with the task.
    """
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers + 2

    def submit():
        if isinstance(frames, FrameStream):
            ranges = [(a, min(b, a + chunk_frames)) for lo, hi in frames.ranges()
                      for a in range(lo, hi, chunk_frames) for b in (hi,)]
            calibrate_on(frames.read(*ranges[0]))
            for a, b in ranges:
                yield frames.header, client.submit(_stream_task, frames, a, b, names, common,
                                                   options, pure=False, **work)
            return
        for start, sub in _chunks(frames, chunk_frames, gain, detector):
            if start == 0:
                calibrate_on(sub)
            yield sub.header, client.submit(_chunk_task, sub, start, names, common, options,
                                            pure=False, **work)

    pending = deque()
    for item in submit():
        pending.append(item)
        if len(pending) >= window:
            header, future = pending.popleft()
            yield header, future.result()
    while pending:
        header, future = pending.popleft()
        yield header, future.result()


def _collect(results, on_chunk, bar, parts, counts, count_cards, state):
    """Gather the chunk results in frame order into ``parts``, ``counts`` and ``state``.

    ``state["samples"]`` pools the frame-shift samples of the chunks.
    """
    for header, (masked, pieces, samples) in results:
        state["header"] = header
        state["n_masked"] += masked
        for name, payloads in samples.items():
            state["samples"].setdefault(name, []).extend(payloads)
        for start, n_piece, events in pieces:
            state["n"] = max(state["n"], start + n_piece)
            state["pieces"].append((start, n_piece))
            if on_chunk is not None:
                on_chunk(start, n_piece, events)
            if state["meta"] is None:
                state["meta"] = dict(events.meta)
            for key in count_cards:
                if key in events.meta:
                    counts[key] = counts.get(key, 0) + int(card_value(events.meta, key))
            events.meta.clear()
            parts.append(events)
            if bar is not None:
                bar.update(n_piece)


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


def _apply_shift_calibration(out, specs, shifted, max_lost, calibrated, fallback=False):
    """Choose each filter's threshold from its frame-shift sample and apply it to ``out``.

    With ``fallback``, a filter whose sample is too small keeps the threshold
    it ran with (a warning, a HISTORY line, ``method='none'`` in its report);
    otherwise that is a `ValueError`.
    """
    from .calibrate import MIN_REJECTED, SHIFTS, apply_threshold, threshold_for
    for name, spec in specs.items():
        payloads = shifted.get(name, [])
        scores = np.concatenate([p[0] for p in payloads]) if payloads else np.zeros(0)
        used = int(sum(p[1] for p in payloads))
        if scores.size * max_lost < MIN_REJECTED:
            need = int(np.ceil(MIN_REJECTED / max_lost))
            msg = (f"max_lost_xray: the frame-shift sample of {name} holds {scores.size} "
                   f"placements of {used} events; estimating a loss of {100 * max_lost:.3g}% "
                   f"needs at least {need} (at least {MIN_REJECTED} rejected)")
            if not fallback:
                raise ValueError(msg + ": give more frames, ask a larger fraction, or "
                                 "calibrate by injection")
            warnings.warn(msg + f"; {name} keeps its default threshold (give more frames to "
                          "calibrate it on the observation)", AstropyUserWarning, stacklevel=3)
            calibrated[name] = dict(method="none", target=float(max_lost), n=int(used),
                                    placements=int(scores.size), need=need)
            continue
        column = np.asarray(out[spec.calibration.column], float)
        finite = np.concatenate([scores[np.isfinite(scores)], column[np.isfinite(column)]])
        limit = float(finite.max()) if finite.size else 0.0
        rep = threshold_for(scores, spec.calibration.sign, max_lost, limit=limit)
        rep.update(method="shift", n=int(used), placements=int(scores.size),
                   shifts=",".join(str(k) for k in SHIFTS))
        rep["rejected"] = apply_threshold(out, spec, rep["value"])
        # the same cut on the events in their own frames: what it rejects
        # beyond the shifted (chance) rate is correlated with the frame's
        # charge, i.e. particle-shower events
        own = _own_frame_rejection(out, spec)
        rep["own"] = own
        rep["excess"] = own - rep["achieved"]
        calibrated[name] = rep


def _own_frame_rejection(events, spec):
    """Fraction of the 0.3-10 keV events whose own-frame score the filter rejects."""
    from .units import DEFAULT_BAND, energy_values
    e = energy_values(events["ENERGY"], u.eV)
    lo, hi = DEFAULT_BAND.to_value(u.eV)
    score = np.asarray(events[spec.calibration.column], float)
    sel = (e >= lo) & (e < hi) & ~np.isnan(score)
    (bit, _), = spec.status.values()
    rej = (np.asarray(events["STATUS"]).astype(np.int64) >> bit) & 1
    return float(rej[sel].mean()) if sel.any() else 0.0


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
        (:func:`xcrfilter.calibrate.shifted_scores`), and the threshold is
        applied at the end of the run; fewer than
        :data:`xcrfilter.calibrate.MIN_REJECTED` rejected events in the
        sample at the asked fraction is an error.  ``"injection"``:
        simulated X-rays injected into the first chunk of frames
        (:func:`xcrfilter.calibrate.calibrate`).
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
        added (:func:`xcrfilter.io.ogip.add_time`).

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
    from .io.outputs import check_api_output
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
            from .calibrate import calibrate
            for name in to_calibrate:
                options[name], calibrated[name] = calibrate(
                    specs[name], sub, common, options.get(name), float(max_lost_xray))

    work = dict(gain=gain, strict=strict, edge_status=edge_status,
                max_active=max_active_pixels, shift=shift)
    if client is None:
        results = _serial_results(frames, int(chunk_frames), names, common, options, work,
                                  calibrate_on, gain, detector)
    else:
        results = _dask_results(client, frames, int(chunk_frames), names, common, options,
                                work, calibrate_on, gain, detector)
    try:
        _collect(results, on_chunk, bar, parts, counts, count_cards, state)
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
        _apply_shift_calibration(out, {n: specs[n] for n in shift["names"]},
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
