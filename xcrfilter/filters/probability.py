"""What every probability filter (CAM, morph) shares: its model, frames, scores and
the split threshold of its features."""
from __future__ import annotations

import os

import numpy as np

from ..events import set_status_bit

__all__ = ["flag_probability", "get_model", "cube_and_events", "record_split_threshold"]


def get_model(model, load, model_class):
    """``model`` itself, or ``load(model)`` for None (the shipped model) or a directory."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return load(model)
    if isinstance(model, model_class):
        return model
    raise TypeError(f"model must be None (shipped model), a model directory or a "
                    f"{model_class.__name__}, got {type(model).__name__}")


def cube_and_events(frames, events, who, why, *, event_threshold, split_threshold,
                    mip_threshold, gain=None, detector=None):
    """``(FrameCube, events)``: the frames in eV and their events (found here when None).

    ``who`` (e.g. ``"cam_filter"``) and ``why`` name the filter and what it
    looks at in the TypeError for an event table given as ``frames``.
    """
    from astropy.table import Table

    from ..events import find_events
    from ..io.frames import FrameCube, as_energy_cube
    if isinstance(frames, Table):
        raise TypeError(f"{who} needs the frames ({why}); pass the event table as events= "
                        "together with its frames")
    cube = frames if isinstance(frames, FrameCube) else as_energy_cube(
        frames, gain=gain, detector=detector, name="frames")
    if events is None:
        events = find_events(cube, event_threshold, split_threshold, mip_threshold)
    return cube, events


def flag_probability(out, prob, threshold, bit, column, description):
    """Store ``prob`` in ``out[column]`` and set STATUS ``bit`` where ``prob >= threshold``.

    The bit is cleared first, so a re-run replaces the filter's own verdict;
    NaN probabilities (unscored events) never set it.  ``out`` is modified
    in place (it is the filter's own new table).

    Returns
    -------
    n_scored, n_rejected : int
    """
    prob = np.asarray(prob, np.float32)
    ok = np.isfinite(prob)
    rej = np.zeros(len(out), bool)
    rej[ok] = prob[ok] >= threshold
    out[column] = prob
    out[column].description = description
    set_status_bit(out, bit, rej)
    return int(ok.sum()), int(rej.sum())


def record_split_threshold(meta, prefix, who, model_split_ev, split_threshold):
    """Record the split threshold a model's features use, and warn when it is not the user's.

    The context features of a model are computed with the split threshold
    stored in the model (the one it was trained with); another value would
    change the features under the forest.  The value used goes to the
    ``<prefix>SPLIT`` card; a different ``split_threshold`` of the run is
    not honoured: it is recorded as ``<prefix>SPLRQ`` and warned about
    (`~astropy.utils.exceptions.AstropyUserWarning` naming both values).

    Parameters
    ----------
    meta : dict
        The ``meta`` of the filter's output table.
    prefix : str
        Header keyword prefix, e.g. ``CAM``.
    who : str
        The filter's name, for the warning.
    model_split_ev : float or None
        The model's split threshold [eV]; None when its features use none.
    split_threshold : `~astropy.units.Quantity` or None
        The split threshold of the run.
    """
    import warnings

    import astropy.units as u
    from astropy.utils.exceptions import AstropyUserWarning

    from ..meta import set_card
    if model_split_ev is None:
        return
    set_card(meta, f"{prefix}SPLIT", float(model_split_ev),
             f"[eV] {who} features: split threshold of the model")
    if split_threshold is None:
        return
    asked = float(u.Quantity(split_threshold).to_value(u.eV))
    if not np.isclose(asked, model_split_ev):
        set_card(meta, f"{prefix}SPLRQ", asked,
                 f"[eV] split threshold asked, not used by {who}")
        warnings.warn(f"{who}: the model computes its features with the split threshold "
                      f"{model_split_ev:g} eV it was trained with, not the {asked:g} eV "
                      f"given (recorded as {prefix}SPLRQ)", AstropyUserWarning, stacklevel=3)
