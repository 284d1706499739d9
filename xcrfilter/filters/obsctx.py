"""Observation-trained context filter: what cosmic-ray showers look like in *this* observation.

No simulator knows a flight detector's particle environment in advance; the
observation itself does.  A celestial X-ray is independent of the particle
showers of its frame, so the context of an event position taken in
*another* frame of the same observation (frame shifting,
`xcrfilter.calibrate`) is distributed exactly as an X-ray's context in its
own frame.  A classifier that separates the 0.3-10 keV events in their own
frames (a mixture, fraction ``pi`` of shower products) from the same events
placed into frames ``k`` in `xcrfilter.calibrate.SHIFTS` later (X-ray-like
by construction) is a positive-unlabelled learner of shower context
(`xcrfilter.ml.pu`: density ratio ``r(x)``, the prior ``pi`` as a lower
bound, ``PROB_OBSCTX = 1 - (1 - pi) / r(x)``).

* **Features**: context only (nearest track's distance and geometry,
  sibling islands within 16-128 pixels, frame totals;
  `xcrfilter.context.context_features`), in a gradient-boosted tree
  ensemble monotone in the physical direction (closer to a track, more or
  brighter islands nearby: only more shower-like).  The event's own shape
  is the same in both samples and cannot be learnt here.
* **Cross-fitting**: blocks of :data:`BLOCK_FRAMES` frames, block ``b`` in
  fold ``b mod`` :data:`N_FOLDS`; shifts stay inside a block, and a fold's
  events are scored by the model of the other folds only.
* **Threshold**: ``OBSCTX_LOSS`` of an event is the (weighted) fraction of
  the placements scoring at least as shower-like, each scored by the model
  that did not see its fold; ``STATUS`` bit
  :data:`OBSCTX_BIT` is set where it is ``<=`` the value that rejects
  ``max_lost`` of the placements (2 % by default, or the pipeline's
  ``max_lost_xray``): the X-ray loss read off the observation.
* **Ranking**: the learnt one and the plain distance to the nearest track
  (and, with option ``morph``, the shipped ``morph`` model's probability
  and its average with the learnt one in log odds, ``ENSEMBLE``:
  :func:`~xcrfilter.ml.pu.mean_log_odds`) are calibrated to the same loss;
  the default (``ENSEMBLE`` with option ``morph``, else the learnt one) is
  used unless another rejects significantly more events in their own
  frames (``(1 - pi) loss + pi recall``; :func:`choose_ranking`,
  ``OBCRANK``).
* **Frames, not events**: X-rays arrive uniformly in time, so every block
  of frames weighs in the loss estimate by its frames, not by its events
  (which rise with the particle rate; :func:`placement_weights`).
* **Short observations**: fewer than :data:`MIN_EVENTS` events to learn
  from: the fixed rankings only; too few placements to estimate the loss:
  SAC's default radius on the track distance (an error when the loss was
  asked for).
* **Shape** (option ``shape``, off by default): a shape-only model trained
  on simulated randomised physics (:func:`load_shape_model`) multiplies the
  context odds by its likelihood ratio
  (:func:`~xcrfilter.ml.pu.combine_shape`); a placement keeps its event's
  shape, so only events with no track within
  `xcrfilter.calibrate.CLEAN_RADIUS` pixels in their own frame are placed,
  each weighted by the probability that it is an X-ray, judged from its
  context in its own frame (:func:`placement_weights`,
  :func:`~xcrfilter.ml.pu.source_weights`).

The statistics, the checks against the truth and the observation length
needed are in :ref:`observation`.  The
filter learns at the end of a run (the pipeline hands it every chunk's
sample through :func:`observe` and calls :func:`conclude`); its pipeline
step only adds the column.
"""
from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..calibrate import (CLEAN_RADIUS, MIN_REJECTED, SHIFTS, covered, own_pixels,
                         write_calibration_cards)
from ..context import DEFAULT_RADII, SHAPE_FEATURES, context_features, feature_matrix
from ..events import set_status_bit
from .sac import SAC_DEFAULTS
from ..ml.pu import (class_prior, cross_fit_scores, effective_number, mean_log_odds,
                     placement_loss, posterior, source_weights, weighted_threshold, with_shape)
from ..contract import Calibration, Card, Count, Filter, Param
from ..units import DEFAULT_BAND, energy_values

__all__ = ["obsctx_filter", "observe", "conclude", "load_shape_model", "learnt_ranking",
           "placement_weights", "choose_ranking",
           "OBSCTX_BIT", "FEATURES", "MONOTONE", "pipeline_step", "FILTER"]

#: STATUS bit set by this filter.
OBSCTX_BIT = 9
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"OBSCTX": (OBSCTX_BIT, "observation-trained context: PROB_OBSCTX >= threshold")}
#: Name of the filter in comparison tables.
REPORT_NAME = "OBSCTX"

#: The score column and its threshold (for comparison sweeps); the threshold
#: is chosen by the filter itself, by frame shift (:func:`conclude`).
CALIBRATION = Calibration("OBSCTX_LOSS", "max_lost", -1, card="OBCTHR", count_card="OBCNREJ",
                          prefix="OBC", uses_shape=False)

#: Context features learnt from (no own-shape feature), and the direction in
#: which each may move the shower probability (+1 up, -1 down, 0 free).
MONOTONE = {
    "TRK_DIST": -1, "TRK_E": +1, "TRK_LEN": 0, "TRK_ALONG": 0, "TRK_ACROSS": -1,
    "TRK_END": -1, "N_TRK_FRAME": +1, "E_TRK_FRAME": +1,
    **{f"N_ISL_{r}": +1 for r in DEFAULT_RADII}, **{f"E_ISL_{r}": +1 for r in DEFAULT_RADII},
    "N_ISL_FRAME": +1, "E_ISL_FRAME": +1,
}
FEATURES = tuple(MONOTONE)

#: Frames per cross-fitting block, and the number of folds.
BLOCK_FRAMES = 50
N_FOLDS = 5
#: Fewest same-frame events the filter learns from; below it, only the fixed
#: rankings (track distance, ``morph``) are calibrated.
MIN_EVENTS = 500
#: How far the ``morph`` ranking's own-frame excess over its estimated loss
#: may exceed the shower fraction's lower bound before it is left out as
#: inconsistent (:func:`conclude`).
MORPH_SLACK = 1.5
#: Standard errors by which another ranking's own-frame rejection must exceed
#: the default ranking's to replace it (:func:`choose_ranking`).
SWITCH_Z = 1.5
#: Comment of the ``OBCRANK`` card: the rankings the observation chooses from.
RANK_COMMENT = "ranking: ENSEMBLE/LEARNT/SHAPE/DISTANCE/MORPH"
#: Name of the ranking that averages the learnt one and ``morph`` (option ``morph``).
ENSEMBLE = "ENSEMBLE"
#: Default fraction of X-ray events the filter may reject.
DEFAULT_MAX_LOST = 0.02


# -- the per-chunk sample ------------------------------------------------------

def _context(data, events, common):
    """:func:`~xcrfilter.context.context_features` of ``events`` at the pipeline's thresholds."""
    return context_features(data, events, split_threshold=common["split_threshold"],
                            event_threshold=common["event_threshold"],
                            track_energy=common["mip_threshold"])


def _learnt_features(ctx):
    """The :data:`FEATURES` columns of a context table, (n, len(FEATURES)) float32."""
    return np.column_stack([np.asarray(ctx[k].value if hasattr(ctx[k], "unit") else ctx[k],
                                       np.float32) for k in FEATURES])


#: Features of an event's own pixels: a placement into another frame keeps
#: its event's values (the other frame has no charge there).
OWN_FEATURES = SHAPE_FEATURES + ("IN_TRACK",)


def load_shape_model(model_dir=None):
    """A shape-only model: by default the shipped one (``xcrfilter/data/shape_model``).

    A balanced random forest on :data:`xcrfilter.context.SHAPE_FEATURES`,
    trained on randomised simulated physics, read by the checked loader of
    `xcrfilter.ml.morph` (``model_dir``: a directory written the same way,
    e.g. one trained without a physics preset).
    """
    from ..ml.morph import default_shape_dir, load_morph_model
    return load_morph_model(default_shape_dir() if model_dir is None else model_dir)


def load_ranking_model(model_dir=None):
    """The simulator-trained ranking of option ``morph``: by default the shipped ``morph`` model.

    ``model_dir``: a directory written the same way (`xcrfilter.ml.morph`),
    e.g. one trained without a physics preset.
    """
    from ..ml.morph import load_morph_model
    return load_morph_model(model_dir)


def observe(cube, events, common, options=None, *, first=0, rng=None):
    """The learning sample of one piece of frames.

    Parameters
    ----------
    cube : `~xcrfilter.io.frames.FrameCube`
        Frames [eV]; ``first`` is the index of its first frame in the observation.
    events : `~astropy.table.Table`
        The events found in ``cube`` (``FRAME`` from 0).
    common : dict
        The pipeline's thresholds (``split_threshold``, ``event_threshold``,
        ``mip_threshold``).

    Returns
    -------
    dict
        ``key`` (FRAME * 2**40 + RAWY * 2**20 + RAWX of the same-frame rows,
        FRAME counting over the observation), ``x_same``, ``fold_same``,
        ``x_shift``, ``fold_shift``, ``source`` (same-frame row of every
        placement); with option ``shape`` also ``ratio`` (shape ratio of the
        same-frame rows) and ``shape_model``; with option ``morph`` also
        ``morph_same``, ``morph_shift`` (``PROB_MORPH`` of both) and
        ``morph_model``.
    """
    data = np.asarray(cube.data, np.float32)
    n = data.shape[0]
    empty = dict(key=np.zeros(0, np.int64), x_same=np.zeros((0, len(FEATURES)), np.float32),
                 fold_same=np.zeros(0, int), x_shift=np.zeros((0, len(FEATURES)), np.float32),
                 fold_shift=np.zeros(0, int), source=np.zeros(0, int))
    if len(events) == 0:
        return empty
    lo, hi = DEFAULT_BAND.to_value(u.eV)
    e = energy_values(events["ENERGY"], u.eV)
    f = np.asarray(events["FRAME"], np.intp)
    y = np.asarray(events["RAWY"], np.intp)
    x = np.asarray(events["RAWX"], np.intp)
    take = np.flatnonzero((e >= lo) & (e < hi))
    options = options or {}
    check_options(options.get("shape"), options.get("shape_model"), options.get("morph"),
                  options.get("morph_model"))
    shape = _on_off(options.get("shape"))
    model = load_shape_model(options.get("shape_model")) if shape else None
    morph = (load_ranking_model(options.get("morph_model"))
             if _on_off(options.get("morph"), "morph") else None)
    if shape:
        empty.update(ratio=np.zeros(0), shape_model=f"{model.name} sha256 {model.sha256[:16]}")
    if morph is not None:
        empty.update(morph_same=np.zeros(0, np.float32), morph_shift=np.zeros(0, np.float32),
                     morph_model=f"{morph.name} sha256 {morph.sha256[:16]}")
    if take.size == 0:
        return empty
    ev = QTable(events[take], copy=True)
    f, y, x = f[take], y[take], x[take]
    gframe = f + int(first)
    block = gframe // BLOCK_FRAMES
    fold = (block % N_FOLDS).astype(int)
    # shifts stay inside the part of the block that this piece holds
    bstart = np.maximum(block * BLOCK_FRAMES - int(first), 0)
    bend = np.minimum((block + 1) * BLOCK_FRAMES - int(first), n)
    blen = bend - bstart
    # padded by 2 pixels: events at the frame edge have a 5 x 5 too (showers
    # enter at the edges: 11 of 391 in-band CR events of a bright check)
    active = np.pad(data >= float(common["split_threshold"].to_value(u.eV)),
                    ((0, 0), (2, 2), (2, 2)))
    own, _ = own_pixels(active, f, y + 2, x + 2)
    rows, gs = [], []
    for k in SHIFTS:
        ok = blen > k
        g = bstart + (f - bstart + k) % np.maximum(blen, 1)
        ok &= ~covered(active, g, y + 2, x + 2, own)
        rows.append(np.flatnonzero(ok))
        gs.append(g[ok])
    rows, gs = np.concatenate(rows), np.concatenate(gs)
    placed = QTable(ev[rows], copy=True)
    placed["FRAME"] = gs.astype(np.int32)
    key = event_keys(gframe, y, x)
    ctx_same, ctx_shift = _context(data, ev, common), _context(data, placed, common)
    x_same, x_shift = _learnt_features(ctx_same), _learnt_features(ctx_shift)
    if shape:
        p = np.clip(model.predict_proba(feature_matrix(ev, ctx_same, model.feature_names)),
                    1e-3, 1 - 1e-3)
        ratio = p / (1 - p)
    if morph is not None:
        # a placement: the other frame's context, its event's own pixels
        names = morph.feature_names
        m_same = feature_matrix(ev, ctx_same, names)
        m_shift = feature_matrix(placed, ctx_shift, names)
        own = np.isin(names, OWN_FEATURES)
        m_shift[:, own] = m_same[rows][:, own]
        m_same = morph.predict_proba(m_same).astype(np.float32)
        m_shift = morph.predict_proba(m_shift).astype(np.float32)
    out = dict(key=key, x_same=x_same, fold_same=fold, x_shift=x_shift, fold_shift=fold[rows],
               source=rows)
    if shape:
        out.update(ratio=ratio, shape_model=empty["shape_model"])
    if morph is not None:
        out.update(morph_same=m_same, morph_shift=m_shift, morph_model=empty["morph_model"])
    return out


def event_keys(frame, rawy, rawx):
    """One int64 per event: FRAME * 2**40 + RAWY * 2**20 + RAWX (unique in an observation)."""
    return ((np.asarray(frame, np.int64) << 40) | (np.asarray(rawy, np.int64) << 20)
            | np.asarray(rawx, np.int64))


def merge_samples(payloads):
    """The learning samples of the chunks (:func:`observe`) as one sample.

    ``source`` is renumbered to index the merged same-frame rows; ``ratio``
    and ``morph_same``/``morph_shift`` are kept when every chunk has them.
    """
    names = ["key", "x_same", "fold_same", "x_shift", "fold_shift", "source"]
    if payloads and all("ratio" in p for p in payloads):
        names.append("ratio")
    if payloads and all("morph_same" in p for p in payloads):
        names += ["morph_same", "morph_shift"]
    out = {k: [] for k in names}
    offset = 0
    for p in payloads:
        for k in out:
            out[k].append(p[k] + offset if k == "source" else p[k])
        offset += len(p["key"])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def conclude(events, payloads, *, max_lost=None, required=False, seed=0):
    """Learn from the samples of every chunk, score and flag ``events`` in place.

    Parameters
    ----------
    events : `~astropy.table.QTable`
        The whole observation's events (``FRAME`` over the observation).
    payloads : list of dict
        :func:`observe` of every piece of frames.
    max_lost : float, optional
        Fraction of X-ray events to reject (default :data:`DEFAULT_MAX_LOST`).
    required : bool
        True when the user asked for ``max_lost``: too few placements to
        estimate it is an error.  Otherwise it is a warning, and the events
        within SAC's default radius (`xcrfilter.filters.sac.SAC_DEFAULTS`)
        of a track are flagged.  Fewer than :data:`MIN_EVENTS` events to
        learn from is a warning: only the fixed rankings (track distance,
        ``morph``) are calibrated.
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    dict
        The calibration report (``value``, ``achieved``, ``lo``, ``hi``,
        ``n``, ``placements``, ``target``, ``method``, ``prior``,
        ``ranking``...); ``method`` is ``'none'`` when the loss could not
        be estimated.

    Raises
    ------
    ValueError
        ``required`` and too few placements to estimate the loss.
    """
    max_lost = DEFAULT_MAX_LOST if max_lost is None else float(max_lost)
    s = merge_samples(payloads)
    n_same, n_shift = len(s["key"]), len(s["fold_shift"])
    events["PROB_OBSCTX"] = np.full(len(events), np.nan, np.float32)
    events["OBSCTX_LOSS"] = np.full(len(events), np.nan, np.float32)
    set_status_bit(events, OBSCTX_BIT, np.zeros(len(events), bool))
    shape_models = sorted({p["shape_model"] for p in payloads if "shape_model" in p})
    morph_models = sorted({p["morph_model"] for p in payloads if "morph_model" in p})
    FILTER.record(events.meta, {"shape": "ratio" in s, "morph": "morph_same" in s},
                  cards=[("OBCSHMOD", ", ".join(shape_models)[:68], "obsctx: shape model")]
                  * bool(shape_models)
                  + [("OBCMRMOD", ", ".join(morph_models)[:68], "obsctx: morph model")]
                  * bool(morph_models))
    col = FEATURES.index("TRK_DIST")
    dist = s["x_same"][:, col].astype(float) if n_same else np.zeros(0)
    dist_h = s["x_shift"][:, col].astype(float) if n_shift else np.zeros(0)
    keys = event_keys(events["FRAME"], events["RAWY"], events["RAWX"])
    order = np.argsort(keys)
    pos = order[np.searchsorted(keys[order], s["key"])] if n_same else np.zeros(0, int)
    need = int(np.ceil(2 * MIN_REJECTED / max_lost))
    if n_shift < need:
        msg = (f"obsctx: {n_same} events in band and {n_shift} placements in other frames; "
               f"estimating a loss of {100 * max_lost:.3g}% needs at least {need} placements")
        if required:
            raise ValueError(msg + ": give more frames")
        # too short to estimate anything: SAC's default radius on the track distance
        radius = SAC_DEFAULTS["radius"]
        rej = np.zeros(len(events), bool)
        rej[pos] = dist <= radius
        set_status_bit(events, OBSCTX_BIT, rej)
        tail = f"; events within SAC's default radius ({radius:g} px) of a track flagged"
        warnings.warn(msg + tail, UserWarning, stacklevel=2)
        FILTER.record(events.meta, None, {"OBCNREJ": int(rej.sum()), "OBCNSCO": 0},
                      [("OBCRANK", "DISTANCE", RANK_COMMENT)], msg + tail)
        return dict(method="none", target=float(max_lost), n=n_same, placements=n_shift,
                    need=need)
    ratio = s.get("ratio")
    q_context = None
    learnt = "LEARNT" if ratio is None else "SHAPE"
    rankings = {"DISTANCE": (-dist, -dist_h)}
    # the shower-fraction bound of the distance alone: the prior when nothing
    # is learnt, and a floor of the bound that checks the morph ranking
    pi_distance = (class_prior(-dist, -dist_h)
                   if n_same < MIN_EVENTS or "morph_same" in s else 0.0)
    if n_same < MIN_EVENTS:
        # too few to learn from: the rankings that need no learning
        pi, prob = pi_distance, {}
        msg = (f"obsctx: {n_same} events in band, learning needs at least {MIN_EVENTS}; "
               "the fixed rankings only")
        warnings.warn(msg, UserWarning, stacklevel=2)
        FILTER.record(events.meta, history=msg)
    else:
        r_same, r_shift, pi, q_context, p_learnt = learnt_ranking(s, seed=seed)
        rankings = {learnt: (r_same, r_shift), **rankings}
        prob = {learnt: p_learnt}
    # The rankings, each held out and calibrated to the same X-ray loss: the
    # learnt one, the distance to the nearest track alone (SAC's) and, with
    # option morph, the simulator-trained morph model and its average with the
    # learnt one.  At equal loss, the one that rejects more events in their
    # own frames rejects more shower products (own-frame rejection =
    # (1 - pi) loss + pi recall), so the observation itself chooses, without
    # truth: the default (the average, else the learnt one) unless another
    # rejects significantly more (choose_ranking).
    weights, far_only = placement_weights(s, q_context, shape=ratio is not None,
                                          min_effective=need)
    candidates = {}
    if "morph_same" in s:
        # the simulator-trained ranking competes on the same terms
        m_same, m_shift = s["morph_same"].astype(float), s["morph_shift"].astype(float)
        rankings["MORPH"] = (m_same, m_shift)
        if learnt in prob:
            # two estimates of P(shower | context, shape), one with the context
            # learnt here, one learnt on the simulator: their log odds averaged
            prob[ENSEMBLE] = mean_log_odds(r_same, m_same)
            rankings = {ENSEMBLE: (prob[ENSEMBLE], mean_log_odds(r_shift, m_shift)),
                        **rankings}
    for name, (rs, rh) in rankings.items():
        # every ranking is judged against all the placements at once: the models
        # of the folds give probabilities on one scale, and the placements'
        # rejected fraction under one threshold is the mean of the folds' (each
        # placement scored by the model that did not see its fold), estimated
        # from five times the placements of one fold.  Fold by fold, the ordinary
        # runs of docs/observation.rst realised up to 2.99 % at 2 % asked, all
        # at once 1.67-2.47 %.
        loss_same, loss_shift = placement_loss(rs, rh, weights)
        good = np.isfinite(loss_shift)
        rep = weighted_threshold(loss_shift[good], weights[good], max_lost)
        own = float(np.mean(np.nan_to_num(loss_same, nan=2.0) <= rep["value"]))
        candidates[name] = (own, loss_same, good, rep)
    # A ranking whose loss estimate is low looks better.  The morph ranking has
    # no monotone constraint to keep it honest: it (and the average that holds
    # it) is left out where its own-frame rejection exceeds what the
    # observation's shower fraction allows ((1 - pi) loss + pi recall <=
    # loss + pi), with MORPH_SLACK for pi being a lower bound.
    dropped, bound = "", max(pi, pi_distance)
    for name in ("MORPH", ENSEMBLE):
        if name not in candidates:
            continue
        own, *_, rep = candidates[name]
        if own > rep["achieved"] + MORPH_SLACK * bound:
            gone = ("MORPH", ENSEMBLE) if name == "MORPH" else (ENSEMBLE,)
            for k in gone:
                candidates.pop(k, None)
            dropped += (f"; {' and '.join(k.lower() for k in gone)} "
                        f"ranking{'s' * (len(gone) > 1)} left out: "
                        f"{name.lower()}'s own-frame rejection {100 * own:.2f}% at an estimated "
                        f"loss of {100 * rep['achieved']:.2f}% is more than the shower "
                        f"fraction (>= {bound:.3f}) allows")
    default = next((k for k in (ENSEMBLE, learnt) if k in candidates), "DISTANCE")
    choice = choose_ranking(candidates, default, pi)
    _, loss_same, good, rep = candidates[choice]
    column = np.full(len(events), np.nan, np.float32)
    if default in prob:
        column[pos] = prob[default]
    events["PROB_OBSCTX"] = column
    events["PROB_OBSCTX"].description = "shower probability of the default obsctx ranking"
    loss = np.full(len(events), np.nan, np.float32)
    loss[pos] = loss_same
    events["OBSCTX_LOSS"] = loss
    events["OBSCTX_LOSS"].description = ("fraction of X-ray-like (frame-shifted) events scoring "
                                         "at least as shower-like")
    ok = np.isfinite(loss)
    rej = np.zeros(len(events), bool)
    rej[ok] = loss[ok] <= rep["value"]
    set_status_bit(events, OBSCTX_BIT, rej)
    own_rate = float(rej[pos].mean()) if pos.size else 0.0
    used = good & (weights > 0)  # the placements the estimate rests on
    rep.update(method="shift", n=int(np.unique(s["source"][used]).size),
               placements=int(used.sum()), shifts=",".join(str(k) for k in SHIFTS),
               rejected=int(rej.sum()), own=own_rate, excess=own_rate - rep["achieved"],
               prior=pi, n_same=n_same, ranking=choice,
               own_rates={k: v[0] for k, v in candidates.items()})
    cards = [
        ("OBCRANK", choice, RANK_COMMENT),
        ("OBCTHR", float(rep["value"]), "obsctx OBSCTX_LOSS threshold"),
        ("OBCPRIOR", float(pi), "obsctx: shower fraction of in-band events (bound)"),
        ("OBCFOLD", N_FOLDS, f"obsctx: folds of {BLOCK_FRAMES}-frame blocks")]
    counts = {"OBCNREJ": int(rej.sum()), "OBCNSCO": int(np.isfinite(loss_same).sum())}
    FILTER.record(events.meta, None, counts, cards, [
        "obsctx: own-frame rejection at the calibrated loss " + ", ".join(
            f"{k.lower()} {100 * v[0]:.2f}%" for k, v in candidates.items())
        + f": {choice.lower()} ranking used" + dropped,
        f"obsctx: {'learnt from' if learnt in candidates else 'ranked'} {n_same} events "
        f"in their own frames and {n_shift} placements in other frames ({N_FOLDS} folds of "
        f"{BLOCK_FRAMES}-frame blocks); shower fraction >= {pi:.3f}; threshold "
        f"{rep['value']:.4f}: {int(rej.sum())} events rejected"]
        + [f"obsctx: loss estimated on the placements of {rep['n']} events without a track "
           f"within {CLEAN_RADIUS:g} px in their own frame"] * far_only)
    return rep


def learnt_ranking(sample, *, seed=0):
    """The ranking learnt from the observation's sample, cross-fitted.

    Parameters
    ----------
    sample : dict
        :func:`merge_samples` of the observation (with ``ratio``: the shape
        option).
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    r_same, r_shift : ndarray, shape (n,) and (m,)
        Scores of the same-frame rows and of the placements: the context
        density ratio, or with ``ratio`` the combined probability of context
        and shape (:func:`~xcrfilter.ml.pu.with_shape`).
    pi : float
        Shower fraction of the events (lower bound; with ``ratio`` taken
        again on the combined score).
    q_context : ndarray or None
        With ``ratio``: the context posterior of the same-frame rows, which
        weights the placements (:func:`placement_weights`).
    prob : ndarray, shape (n,)
        The shower probability of the same-frame rows.
    """
    r_same, r_shift = cross_fit_scores(sample["x_same"], sample["fold_same"], sample["x_shift"],
                                       sample["fold_shift"], n_folds=N_FOLDS,
                                       monotone=[MONOTONE[k] for k in FEATURES], seed=seed)
    pi = class_prior(r_same, r_shift)
    ratio = sample.get("ratio")
    if ratio is None:
        return r_same, r_shift, pi, None, posterior(r_same, pi)
    c_same, c_shift, _, pi = with_shape(r_same, r_shift, ratio, ratio[sample["source"]], pi)
    # the loss: each placement weighted by P(X-ray) of its event's context in
    # its own frame.  Not the combined posterior: an X-ray's own-frame context
    # is independent of its shape, so its weight is independent of how often
    # its shape gets its placements rejected; with the combined posterior the
    # X-rays of shower-like shape count less exactly where they are lost.
    return c_same, c_shift, pi, posterior(r_same, pi), c_same


def placement_weights(sample, q_context=None, *, shape=False, min_effective=0):
    """Weights of the placements in the loss estimate, one per placement.

    Two corrections, both read off the observation:

    * **X-ray sources** (``shape`` True: a placement carries its event's own
      pixels).  Only events with no particle track within
      `xcrfilter.calibrate.CLEAN_RADIUS` pixels and no other island within
      16 pixels in their own frame are placed (the frame-shift calibration
      of the ``cam`` and ``morph`` filters takes the same track radius),
      each weighted by ``1 - q`` with ``q`` its context posterior in its
      own frame (:func:`~xcrfilter.ml.pu.source_weights`).  An X-ray's own-frame
      context is independent of its shape, so neither choice changes the
      X-ray shapes in the sample; both remove shower products, whose own
      shape would be placed along with them.  Where those events hold
      fewer than ``min_effective`` placements (Kish's effective number:
      small frames, a sky full of tracks), all events are placed, weighted
      by ``1 - q`` alone.
    * **Frames, not events** (always).  X-rays arrive uniformly in time, so
      every frame is equally likely to receive one; the placements of a
      block of frames are as many as its events, which rise with the
      particle rate.  Each block of :data:`BLOCK_FRAMES` frames (shifts
      stay inside it) is given a total weight proportional to its frames.

    Parameters
    ----------
    sample : dict
        :func:`merge_samples` of the observation.
    q_context : ndarray, optional
        Context posterior of the same-frame rows (default: 0, every event
        an X-ray as far as the context says).
    shape : bool
        The rankings look at the event's own pixels.
    min_effective : float
        Fewest effective placements of the events far from tracks.

    Returns
    -------
    weights : ndarray, shape (n_placements,)
        Non-negative; a block's weights sum to its number of frames.
    far_only : bool
        Only the events far from tracks were placed.
    """
    src = np.asarray(sample["source"], np.intp)
    frame = np.asarray(sample["key"], np.int64) >> 40
    b, far_only = np.ones(src.size), False
    if shape and src.size:
        x = sample["x_same"]
        far = ((x[:, FEATURES.index("TRK_DIST")] > CLEAN_RADIUS)
               & (x[:, FEATURES.index(f"N_ISL_{DEFAULT_RADII[0]}")] == 0))[src]
        if q_context is not None:
            b = source_weights(q_context[src])
        if far.any() and effective_number(b * far) >= min_effective:
            b, far_only = b * far, True
    if not src.size:
        return b, far_only
    block, inv = np.unique(frame[src] // BLOCK_FRAMES, return_inverse=True)
    total = np.bincount(inv, weights=b, minlength=block.size)
    frames = np.minimum(BLOCK_FRAMES, frame.max() + 1 - block * BLOCK_FRAMES)
    return b * (frames / np.maximum(total, 1.0))[inv], far_only


def choose_ranking(candidates, default, pi):
    """The ranking to use: ``default`` unless another rejects significantly more.

    At equal X-ray loss the ranking that rejects more events in their own
    frames rejects more shower products (``(1 - pi) loss + pi recall``).
    Where the showers are few (an ordinary run), the differences between
    rankings are mostly the noise of their loss estimates, and taking the
    largest would favour the ranking whose loss is underestimated.  So a
    candidate replaces ``default`` (the ranking learnt from the
    observation, or its average with ``morph``) only where its own-frame
    rejection is larger by more than :data:`SWITCH_Z` standard errors:
    those of the events the two rank differently, and of the two loss
    estimates.

    Parameters
    ----------
    candidates : dict
        Name -> ``(own-frame rejection, loss_same, good, report)`` of
        :func:`conclude` (the report holds the 68 % interval ``lo``-``hi``).
    default : str
        A key of ``candidates``.
    pi : float
        Shower fraction of the events (bound).

    Returns
    -------
    str
        The chosen key.
    """
    def rejected(c):
        return np.nan_to_num(c[1], nan=2.0) <= c[3]["value"]

    base = candidates[default]
    rej0, half0 = rejected(base), (base[3]["hi"] - base[3]["lo"]) / 2
    choice, best = default, base[0]
    for name, cand in candidates.items():
        if name == default:
            continue
        rej = rejected(cand)
        n = max(rej.size, 1)
        half = (cand[3]["hi"] - cand[3]["lo"]) / 2
        sigma = np.sqrt(np.sum(rej != rej0) / n ** 2
                        + (1 - pi) ** 2 * (half ** 2 + half0 ** 2))
        if cand[0] - base[0] > SWITCH_Z * sigma and cand[0] > best:
            choice, best = name, cand[0]
    return choice


# -- the filter and its pipeline plug-in --------------------------------------

def obsctx_filter(frames, events=None, *, max_lost=DEFAULT_MAX_LOST, event_threshold=260 * u.eV,
                  split_threshold=80 * u.eV, mip_threshold=10 * u.keV, gain=None,
                  detector=None, shape=False, shape_model=None, morph=False, morph_model=None,
                  seed=0):
    """Learn the context of cosmic-ray showers from the frames and flag events by it.

    Parameters
    ----------
    frames : CCDData, Quantity, FITS path(s) or FrameCube
        The observation, (n_frames, ny, nx); at least a few hundred frames
        (:data:`MIN_EVENTS` events in 0.3-10 keV).
    events : `~astropy.table.Table`, optional
        Events found in ``frames``; default found here.
    max_lost : float
        Fraction of X-ray events the filter may reject, estimated by frame
        shift.  Default 0.02.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event finding and context thresholds (260 eV, 80 eV, 10 keV).
    gain, detector : optional
        Passed to `xcrfilter.io.frames.as_energy_cube`.
    shape : bool or {'on', 'off'}
        Multiply the learnt context odds by the shape likelihood ratio of
        the shipped shape-only model (:func:`~xcrfilter.ml.pu.combine_shape`; the loss
        estimate then places only events far from tracks, weighted by
        :func:`~xcrfilter.ml.pu.source_weights`: :func:`placement_weights`).
        Default False: context only.
    shape_model : path-like, optional
        Directory of another shape-only model (:func:`load_shape_model`),
        e.g. one trained without a physics preset; needs ``shape`` on.
    morph : bool or {'on', 'off'}
        Average the learnt ranking with the shipped ``morph`` model
        (context and shape, trained on simulated randomised physics) in log
        odds (``ENSEMBLE``, :func:`~xcrfilter.ml.pu.mean_log_odds`), and use
        the average unless the learnt ranking, the track distance or
        ``morph`` alone, each calibrated by frame shift like it, rejects
        significantly more events in their own frames at the asked loss
        (:func:`choose_ranking`, ``OBCRANK``).  Needs ``shape`` on (its loss
        estimate weights the placements).  Default False.
    morph_model : path-like, optional
        Directory of another ``morph`` model (:func:`load_ranking_model`);
        needs ``morph`` on.
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``PROB_OBSCTX`` (float32, NaN where
        not scored: outside 0.3-10 keV)
        and STATUS bit 9; header cards ``OBCTHR``, ``OBCNREJ``, ``OBCNSCO``,
        ``OBCPRIOR``, ``OBCFOLD``, the frame-shift loss estimate
        (``OBCCALF``, ``OBCCALLO``, ``OBCCALHI``, ``OBCCALN``) and HISTORY.

    Raises
    ------
    ValueError
        Too few events to learn from, bad frames or thresholds.
    """
    from .probability import cube_and_events
    cube, events = cube_and_events(
        frames, events, "obsctx_filter", "the context is learnt from the whole observation",
        event_threshold=event_threshold, split_threshold=split_threshold,
        mip_threshold=mip_threshold, gain=gain, detector=detector)
    common = dict(event_threshold=event_threshold, split_threshold=split_threshold,
                  mip_threshold=mip_threshold)
    out = QTable(events, copy=True)
    payload = observe(cube, out, common, {"shape": shape, "shape_model": shape_model,
                                          "morph": morph, "morph_model": morph_model})
    rep = conclude(out, [payload], max_lost=max_lost, required=True, seed=seed)
    write_calibration_cards(out.meta, {"obsctx": FILTER}, {"obsctx": rep})
    return out


def pipeline_step(cube, events, *, max_lost=None, shape=False, shape_model=None, morph=False,
                  morph_model=None):
    """Pipeline step ``obsctx``: the column, unscored until the run ends (:func:`conclude`)."""
    check_options(shape, shape_model, morph, morph_model)
    out = QTable(events, copy=True)
    out["PROB_OBSCTX"] = np.full(len(out), np.nan, np.float32)
    out["OBSCTX_LOSS"] = np.full(len(out), np.nan, np.float32)
    set_status_bit(out, OBSCTX_BIT, np.zeros(len(out), bool))
    return out


def check_options(shape, shape_model, morph, morph_model):
    """Refuse inconsistent options: a model without its option, ``morph`` without ``shape``."""
    shape, morph = _on_off(shape), _on_off(morph, "morph")
    if shape_model is not None and not shape:
        raise ValueError("obsctx option shape_model is given but shape is not 'on'.")
    if morph_model is not None and not morph:
        raise ValueError("obsctx option morph_model is given but morph is not 'on'.")
    if morph and not shape:
        raise ValueError("obsctx option morph needs shape 'on': the loss estimate of a ranking "
                         "that uses the event's own shape weights the placements by the "
                         "shape-combined posterior.")


#: The header card of the ``shape`` option.
SHAPE_CARD = Card("OBCSHAPE", "obsctx: context odds times the shape ratio")
#: The header card of the ``morph`` option.
MORPH_CARD = Card("OBCMORPH", "obsctx: learnt ranking averaged with morph")


def _on_off(value, name="shape"):
    """An on/off option (``shape``, ``morph``) as a bool: True/False or 'on'/'off'."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return bool(value)
    if value in ("on", "off"):
        return value == "on"
    raise ValueError(f"obsctx option {name} must be 'on', 'off', True or False, got {value!r}.")


#: The filter's declaration (`xcrfilter.registry`): it learns from the whole
#: observation (``observe`` in every chunk, ``conclude`` at the end of the
#: run) and takes its loss from ``--max-lost-xray`` (default 2 %).
FILTER = Filter(
    name="obsctx", step=pipeline_step, status=STATUS, report_name=REPORT_NAME,
    card_prefix="OBC",
    params=(Param("max_lost", None, "X-ray loss at which events are rejected (default: "
                  "--max-lost-xray, else 2%)", cli=False),
            Param("shape", None, "'on': multiply the observation-learnt context odds by "
                  "the likelihood ratio of the event's own shape from the shipped shape-only "
                  "model (trained on simulated randomised physics); 'off' (default): "
                  "context only, no simulator", choices=("on", "off"), convert=_on_off,
                  card=SHAPE_CARD),
            Param("shape_model", None, "directory of another shape-only model for "
                  "--obsctx-shape on (default: the shipped one)", metavar="DIR"),
            Param("morph", None, "'on' (needs --obsctx-shape on): average the learnt "
                  "ranking with the shipped morph model (trained on simulated randomised "
                  "physics) in log odds; the observation keeps the average unless the learnt "
                  "one, the track distance or morph alone rejects significantly more at the "
                  "asked loss; 'off' (default)",
                  choices=("on", "off"), convert=lambda v: _on_off(v, "morph"),
                  card=MORPH_CARD),
            Param("morph_model", None, "directory of another morph model for --obsctx-morph "
                  "on (default: the shipped one)", metavar="DIR")),
    calibration=CALIBRATION,
    counts=(Count("OBCNREJ", f"events rejected by obsctx (bit {OBSCTX_BIT})"),
            Count("OBCNSCO", "events scored by obsctx")),
    observe=observe, conclude=conclude,
)
