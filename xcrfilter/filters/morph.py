"""Shape-and-context filter (``morph``): a balanced random forest on whole-frame context.

Every event with reconstructed energy in the model's band (0.3-10 keV for
the shipped model) is described by its own island shape and by the whole
frame around it (`xcrfilter.context.context_features`: distance to and
geometry of the nearest particle track, sibling islands within 16-128 px and
in the frame), and scored by the balanced random forest of a ``morph``
model (`xcrfilter.ml.morph`): ``PROB_MORPH`` is its cosmic-ray probability.
``STATUS`` bit 6 is set where ``PROB_MORPH >= threshold``.  Events outside
the band get ``PROB_MORPH = NaN`` and no bit.  No network is involved, so
the filter runs at the speed of event finding.

The shipped model was trained on randomised simulator physics (secondary
spread and yields, orphan showers, rates, noise, spectra; see
`xcrfilter.simulate.PhysicsRanges`) and validated leave-one-physics-out
(``docs/generalisation.rst``).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..contract import Calibration, Card, Count, Filter, Param
from ..units import energy_values
from .probability import (cube_and_events, flag_probability, get_model, model_and_threshold,
                          record_split_threshold)

__all__ = ["morph_filter", "MORPH_BIT", "pipeline_step", "is_available", "FILTER"]

#: STATUS bit set by this filter.
MORPH_BIT = 6
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"MORPH": (MORPH_BIT, "morph filter: PROB_MORPH >= threshold")}

#: Calibration of the threshold on the observation (`xcrfilter.calibrate`):
#: the score column, the option it sets, +1 because high probabilities are
#: rejected, the keywords of the threshold and of the count; the forest
#: looks at the event's own shape.
CALIBRATION = Calibration("PROB_MORPH", "threshold", +1, card="MRPTHR", count_card="MRPNREJ",
                          prefix="MRP", uses_shape=True)

#: Header keywords holding counts (summed by the pipeline over chunks of frames).
COUNTS = (Count("MRPNSCO", "events scored by the morph filter"),
          Count("MRPNREJ", f"events rejected by morph (bit {MORPH_BIT})"))


def is_available():
    """True when the shipped ``morph`` model is installed."""
    from ..ml.morph import FOREST_FILE, default_morph_dir
    return (default_morph_dir() / FOREST_FILE).is_file()


def _get_model(model):
    from ..ml.morph import MorphModel, load_morph_model
    return get_model(model, load_morph_model, MorphModel)


def _apply(data_ev, events, model, threshold, split_threshold=None):
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(events).__name__}")
    missing = [c for c in ("FRAME", "RAWX", "RAWY", "ENERGY", "PHAS", "GRADE", "STATUS")
               if c not in events.colnames]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the morph filter")
    out = QTable(events, copy=True)
    n = len(out)
    e = energy_values(out["ENERGY"])
    if not np.all(np.isfinite(e)):
        raise ValueError("events: ENERGY holds NaN or infinite values")
    lo, hi = model.band_ev
    inb = (e >= lo) & (e < hi)
    prob = np.full(n, np.nan, np.float32)
    if inb.any():
        sub = out[inb]
        if int(np.max(sub["FRAME"])) >= data_ev.shape[0] or int(np.min(sub["FRAME"])) < 0:
            raise ValueError(f"events: FRAME values outside the {data_ev.shape[0]} frames given")
        prob[inb] = model.predict_proba(model.features(data_ev, sub)).astype(np.float32)
    n_scored, n_rej = flag_probability(out, prob, threshold, MORPH_BIT, "PROB_MORPH",
                                       "morph filter CR probability (NaN outside the band)")
    record_split_threshold(out.meta, "MRP", "morph",
                           float(model.context_kw["split_threshold"].to_value(u.eV)),
                           split_threshold)
    cards = model.header_cards() + [
        ("MRPELO", float(lo), "[eV] morph scored band lower edge (inclusive)"),
        ("MRPEHI", float(hi), "[eV] morph scored band upper edge (exclusive)")]
    FILTER.record(out.meta, {"threshold": float(threshold)},
                  {"MRPNSCO": n_scored, "MRPNREJ": n_rej}, cards,
                  f"morph_filter: model {model.name} sha256 {model.sha256[:16]}, "
                  f"threshold {threshold:.4f}: {n_rej} of {n_scored} scored events rejected")
    return out


def morph_filter(frames, events=None, *, threshold=None, model=None,
                 event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                 mip_threshold=10 * u.keV, gain=None, detector=None):
    """Score every event with the shape-and-context forest.

    Parameters
    ----------
    frames : CCDData, NDData, Quantity, FITS path(s) or FrameCube
        The frames the events come from, one frame (ny, nx) or a cube
        (n_frames, ny, nx); the context features need the whole frame.
    events : `~astropy.table.Table`, optional
        Events found in ``frames`` (FRAME, RAWX, RAWY, ENERGY [eV], PHAS,
        GRADE, STATUS); default: found here with
        `xcrfilter.events.find_events` and the thresholds below.
    threshold : float, optional
        CR-probability threshold in [0, 1]; ``STATUS`` bit 6 where
        ``PROB_MORPH >= threshold``.  Default: the model's (its model card
        says how it was chosen).
    model : None, path-like or `xcrfilter.ml.morph.MorphModel`, optional
        Model directory; default the model shipped in
        ``xcrfilter/data/morph_model``.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event finding (260 eV, 80 eV, 10 keV), used when ``events`` is None.
    gain, detector : optional
        Passed to `xcrfilter.io.frames.as_energy_cube`.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``PROB_MORPH`` (float32, NaN outside
        the model's band) and ``STATUS`` with bit 6 set where rejected (the
        bit is cleared first, so a re-run replaces it); header cards
        ``MRPMODEL``, ``MRPSHA``, ``MRPTHR``, ``MRPELO``/``MRPEHI`` [eV] and a
        HISTORY line.  The input is not modified.

    Raises
    ------
    TypeError
        Bad frames, events, threshold or model types.
    ValueError
        Threshold outside [0, 1], missing columns, NaN energies, events that
        do not fit the frames.
    xcrfilter.ml.checksums.ModelFileError
        Missing, corrupt or foreign model files.
    """
    cube, events = cube_and_events(
        frames, events, "morph_filter", "the context features look at the whole frame",
        event_threshold=event_threshold, split_threshold=split_threshold,
        mip_threshold=mip_threshold, gain=gain, detector=detector)
    model, thr = model_and_threshold(model, threshold, _get_model)
    return _apply(np.asarray(cube.data, np.float32), events, model, thr, split_threshold)


# -- the declaration (xcrfilter.registry) -------------------------------------

def pipeline_step(cube, events, *, threshold=None, model=None, split_threshold=None):
    """Pipeline step ``morph``: ``PROB_MORPH`` and STATUS bit 6 (see :func:`morph_filter`).

    ``split_threshold`` (the run's) is compared with the model's: a
    different one is warned about and recorded (``MRPSPLRQ``), the model's
    is used.
    """
    model, thr = model_and_threshold(model, threshold, _get_model)
    return _apply(np.asarray(cube.data, np.float32), events, model, thr, split_threshold)


#: The filter's declaration (`xcrfilter.registry`).
FILTER = Filter(
    name="morph", step=pipeline_step, status=STATUS, shared=("split_threshold",),
    card_prefix="MRP",
    params=(
        Param("threshold", None, "morph CR-probability threshold in [0, 1] (default: the "
              "model's)", type=float, metavar="P",
              card=Card("MRPTHR", "morph filter PROB_MORPH threshold")),
        Param("model", None, "morph model directory (default: the shipped model)",
              metavar="DIR"),
    ),
    calibration=CALIBRATION,
    counts=COUNTS,
    is_available=is_available, model_param="model",
)
