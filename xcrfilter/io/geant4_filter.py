"""Geant4 pixel-deposit tables filtered: the pipeline on each chip's frames, truth kept.

:func:`filter_pixel_table` reads a table a group of frames at a time
(:mod:`xcrfilter.io.geant4`: the dense frames of each chip), runs
:func:`xcrfilter.pipeline.run_pipeline` on each chip's cube, and puts the
events back in the table's terms: ``FRAME`` the input frame, the chip id
and the input coordinates of the seed pixel, ``TRUTH`` and every other
input column taken from the row of the seed pixel's largest deposit, and
the chip geometry, the deposit counts and the time keywords in ``meta``.
``xcrfilter filter`` calls it for pixel tables (:mod:`xcrfilter.cli.sources`).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from astropy.table import vstack
from astropy.utils.exceptions import AstropyUserWarning

from ..meta import add_history, card_value, set_card
from ..pipeline import run_pipeline
from .geant4 import PixelTable, frame_groups, truth_labels
from .headers import header_to_meta
from .timing import add_time

__all__ = ["filter_pixel_table"]


def filter_pixel_table(path, methods=("vfaint",), *, geometry=None, group_frames=16,
                       energy_unit=None, frame_time=None, **pipeline_kwargs):
    """Find and filter events in a pixel-deposit table, one frame group at a time.

    Parameters
    ----------
    path : str or path-like
        Pixel-deposit table (see :mod:`xcrfilter.io.geant4`).
    methods : str or sequence of str, optional
        Filters, as :func:`xcrfilter.pipeline.run_pipeline`.  Default vfaint.
    geometry, group_frames, energy_unit :
        See :func:`xcrfilter.io.geant4.iter_frame_groups`.
    frame_time : `~astropy.units.Quantity` [time], optional
        Default the ``TIMEDEL``, ``FRAMTIME`` or ``TEXPFRAM`` keyword.
    **pipeline_kwargs :
        Thresholds, ``strict``, ``edge_status``, ``options`` ... passed to
        :func:`~xcrfilter.pipeline.run_pipeline` for every chip cube.

    Returns
    -------
    events : `~astropy.table.QTable`
        The :func:`~xcrfilter.events.find_events` columns (``RAWX``/``RAWY``
        on the chip, ``FRAME`` the input frame) and the filters' columns,
        plus the chip id (the input's chip column name, else ``CCDID``), the
        input coordinates of the seed pixel (e.g. ``ACTX``/``ACTY``),
        ``TRUTH`` (0 none, 1 X-ray, 2 CR of the seed pixel's largest
        deposit) and every other input column taken from that deposit's row
        (``PRIMTYPE``, ``PRIMID``, ...); ``TIME`` and the OGIP time keywords
        when a frame time is known.  Sorted by (FRAME, chip, RAWY, RAWX).
    """
    table = PixelTable(path, geometry, energy_unit)
    try:
        parts, seed_rows, meta = [], [], None
        chipname = table.chipcol or "CCDID"
        for cid, ids, cube, best in frame_groups(table, int(group_frames)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                ev = run_pipeline(cube, methods, chunk_frames=len(ids), **pipeline_kwargs)
            if meta is None:
                meta = dict(ev.meta)
            ev.meta.clear()
            f = np.asarray(ev["FRAME"])
            seed_rows.append(best[f, np.asarray(ev["RAWY"]), np.asarray(ev["RAWX"])])
            ev["FRAME"] = ids[f].astype(np.int32)
            ev[chipname] = np.full(len(ev), cid, dtype=np.int16)
            x0, y0 = table.geometry.origins[table.geometry.ids.index(cid)]
            ev[table.xcol] = (np.asarray(ev["RAWX"]) + x0).astype(np.int32)
            ev[table.ycol] = (np.asarray(ev["RAWY"]) + y0).astype(np.int32)
            parts.append(ev)
        if not parts:
            raise ValueError(f"{table.path}: the table holds no deposits.")
        events = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
        rows = np.concatenate(seed_rows)
        _add_truth_columns(events, table, rows)
        events.sort(["FRAME", chipname, "RAWY", "RAWX"])
        events.meta = _pixel_meta(meta, table, chipname)
        add_time(events, table.header, frame_time=frame_time, n_frames=table.n_frames(),
                 warn=False)
        return events
    finally:
        table.close()


def _add_truth_columns(events, table, rows):
    skip = {"FRAME", "ENERGY", table.xcol, table.ycol}
    if table.chipcol:
        skip.add(table.chipcol)
    columns = {}
    for upper, name in table.names.items():
        if upper in skip or upper in events.colnames:
            continue
        col = np.asarray(table.data[name])
        if col.ndim == 1:
            columns[upper] = col
    events["TRUTH"] = truth_labels(columns, rows)
    for name, col in columns.items():
        events[name] = col[rows]


def _pixel_meta(meta, table, chipname):
    out = dict(header_to_meta(table.header))
    for key in ("NFRAMES",):
        out.pop(key, None)
    out.update(meta)
    set_card(out, "NFRAMES", table.n_frames(), "frames of the observation")
    set_card(out, "NCHIPS", len(table.geometry.ids), f"chips ({chipname} column)")
    for key, (value, comment) in table.geometry.cards().items():
        set_card(out, key, value, comment)
    history = list(card_value(out, "HISTORY", []) or [])
    out["HISTORY"] = history
    add_history(out, f"pixel-deposit table {os.path.basename(table.path)}: "
                     f"{len(table.frame)} deposits, {len(table.frame_ids)} frames with signal")
    if table.unit_note:
        add_history(out, table.unit_note)
    if table.n_outside:
        add_history(out, f"{table.n_outside} deposits outside every chip were ignored")
    return out
