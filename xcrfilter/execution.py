"""How the pipeline's chunks of frames are run: in pieces of bounded work, here or on dask.

:func:`iter_chunks` cuts the input into chunks of frames; each chunk is cut
again into pieces with a bounded number of active pixels
(:func:`work_pieces`), whose events are found and judged by every requested
filter (:func:`process_chunk`), together with the frame-shift samples of the
calibration (:func:`shift_sample`).  The chunks are processed in this
process (:func:`serial_results`) or as tasks on a dask cluster
(:func:`dask_results`), and their results gathered in frame order
(:func:`collect`).  :func:`xcrfilter.pipeline.run_pipeline` composes them.
"""
from __future__ import annotations

from collections import deque

import astropy.units as u
import numpy as np

from . import registry
from .calibrate.frameshift import MAX_SHAPE_PER_FRAME, MAX_SHAPE_SAMPLE, shifted_scores
from .events import find_events
from .io.frames import FrameCube, as_energy_cube
from .io.stream import FrameStream
from .meta import card_value

__all__ = ["MAX_ACTIVE_PIXELS", "slice_cube", "iter_chunks", "work_pieces", "process_chunk",
           "shift_sample", "stream_task", "chunk_task", "serial_results", "dask_results",
           "collect"]


def slice_cube(cube, start, stop):
    """Frames ``start:stop`` of ``cube`` (a `~xcrfilter.io.frames.FrameCube`; views, no copy)."""
    mask = None if cube.mask is None else cube.mask[start:stop]
    return FrameCube(cube.data[start:stop], mask, cube.header, cube.filenames, False)


def iter_chunks(frames, chunk_frames, gain, detector):
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
            yield first + start, slice_cube(cube, start, min(n, start + chunk_frames))
        first += n


#: Largest number of active pixels (above the event threshold) handed to the
#: event finder and the filters at once: a fully saturated 512 x 512 frame
#: has 262,144.  Bounds memory on bad frames.
MAX_ACTIVE_PIXELS = 1_000_000
_ROW_STEP = 4


def work_pieces(cube, event_threshold, max_active=None):
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
            pieces.append((a, slice_cube(cube, a, i)))
            a, work = i, 0
        work += int(active[i])
    pieces.append((a, slice_cube(cube, a, n)))
    return pieces


def process_chunk(sub, start, names, common, options, *, gain, strict, edge_status,
                  max_active=None, shift=None):
    """Events of one chunk, filtered.

    Returns ``(n_masked, pieces, shifted)``: the masked pixels of the chunk,
    a list of ``(first_frame, n_frames, events)`` (``FRAME`` of the events
    counts from ``start``, the chunk's first frame in the whole input, and
    each table keeps the ``meta`` its filters wrote), and for each filter
    named in ``shift["names"]`` its frame-shift sample ``(scores,
    n_events)`` (:func:`xcrfilter.calibrate.frameshift.shifted_scores`).
    """
    specs = {name: registry.filter_spec(name) for name in names}
    out = []
    shifted = {}
    for offset, piece in work_pieces(sub, common["event_threshold"], max_active):
        events = find_events(piece, common["event_threshold"], common["split_threshold"],
                             common["mip_threshold"], gain=gain, strict=strict,
                             edge_status=edge_status)
        if shift:
            shift_sample(shifted, piece, events, start + offset, specs, common, options,
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


def shift_sample(samples, piece, events, first, specs, common, options, shift):
    """Add the frame-shift samples of ``piece`` (first frame ``first``) to ``samples``.

    Filters calibrated by frame shift add ``(scores, n_events)``; filters
    that learn from the observation (:attr:`~xcrfilter.contract.Filter.observe`)
    add what they observe.
    """
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


def stream_task(stream, start, stop, *args, **kwargs):
    """Dask task: read frames ``start:stop`` of ``stream`` and process them."""
    return process_chunk(stream.read(start, stop), start, *args, **kwargs)


def chunk_task(sub, start, *args, **kwargs):
    """Dask task: process a chunk of frames shipped to the worker."""
    return process_chunk(sub, start, *args, **kwargs)


def serial_results(frames, chunk_frames, names, common, options, work, calibrate_on, gain,
                   detector):
    """``(header, result of process_chunk)`` of every chunk, computed in this process."""
    for start, sub in iter_chunks(frames, chunk_frames, gain, detector):
        if start == 0:
            calibrate_on(sub)
        yield sub.header, process_chunk(sub, start, names, common, options, **work)


def dask_results(client, frames, chunk_frames, names, common, options, work, calibrate_on,
                 gain, detector):
    """The same as :func:`serial_results`, each chunk a task on a dask cluster.

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
                yield frames.header, client.submit(stream_task, frames, a, b, names, common,
                                                   options, pure=False, **work)
            return
        for start, sub in iter_chunks(frames, chunk_frames, gain, detector):
            if start == 0:
                calibrate_on(sub)
            yield sub.header, client.submit(chunk_task, sub, start, names, common, options,
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


def collect(results, on_chunk, bar, parts, counts, count_cards, state):
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
