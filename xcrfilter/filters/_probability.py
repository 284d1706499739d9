"""What every probability filter (CAM, morph) shares: its model, frames and scores."""
from __future__ import annotations

import os

import numpy as np

from ..events import set_status_bit

__all__ = ["flag_probability", "get_model", "cube_and_events"]


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
    from ..io import FrameCube, as_energy_cube
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
