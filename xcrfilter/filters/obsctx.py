"""Observation-trained context filter: what cosmic-ray showers look like in *this* observation.

No simulator knows a flight detector's particle environment in advance.  The
observation itself does: a celestial X-ray is independent of the particle
showers of its frame, so the context of an event position taken in
*another* frame of the same observation (frame shifting, see
`xcrfilter.calibrate`) is distributed exactly as the context of an X-ray in
its own frame.  The observation's events in their own frames are a mixture
of X-rays and shower products.  A classifier that separates

* **same-frame** context: every 0.3-10 keV event in its own frame
  (a mixture, fraction ``pi`` of shower products), from
* **shifted** context: the same events placed into frames ``k`` in
  `xcrfilter.calibrate.SHIFTS` later (X-ray-like by construction),

is a positive-unlabelled learner of shower context.  With balanced class
weights its odds estimate the density ratio ``r(x) = p_same(x) / p_X(x) =
(1 - pi) + pi p_CR(x) / p_X(x)``, so the probability that an event with
context ``x`` is a shower product is ``1 - (1 - pi) / r(x)``
(``PROB_OBSCTX``).  The class prior is estimated from the same scores:
``pi >= (A(t) - B(t)) / (1 - B(t))`` for every cut ``t``, with ``A`` and
``B`` the fractions of same-frame and shifted events scoring at or above
``t``; the largest value over the cuts is used (a lower bound that is
tight where a cut keeps nearly all shower products).

Only context enters (distance to and geometry of the nearest track,
sibling islands within 16-128 pixels, frame totals;
`xcrfilter.context.context_features`): the event's own shape is identical
in both samples, so it cannot be learnt here.  The classifier is a
gradient-boosted tree ensemble (scikit-learn's
``HistGradientBoostingClassifier``) constrained to be monotone in the
physical direction: closer to a track, more or brighter islands nearby,
more tracks in the frame can only make an event more shower-like.
Unconstrained, it learns the small differences between the two samples
before the showers.

**Cross-fitting.**  Frames are grouped in blocks of :data:`BLOCK_FRAMES`,
and block ``b`` belongs to fold ``b mod`` :data:`N_FOLDS`; the shifts stay
inside a block, so an event and its placements share a fold.  The events of
a fold are scored by a model trained on the other folds only: no event's
score depends on itself in training.  Interleaved blocks give every fold
the whole observation (two runs of different rates given together are
learnt from together).

**Threshold.**  Each fold's model is judged by its own held-out
placements: ``OBSCTX_LOSS`` of an event is the fraction of them scoring at
least as shower-like, the X-ray loss at which the event would be rejected.
``STATUS`` bit :data:`OBSCTX_BIT` is set where ``OBSCTX_LOSS <=`` the
threshold that rejects ``max_lost`` (2 % by default, or the pipeline's
``max_lost_xray``) of the placements: the X-ray loss read off the
observation itself.

**Which ranking.**  Where the showers are a small share of the events (many
X-rays per frame), the learnt ranking can be noisier than the plain
distance to the nearest track.  Both are calibrated to the same loss, and
the one that rejects more events in their own frames is used (header card
``OBCRANK``): at equal X-ray loss, the own-frame rejection is ``(1 - pi)
loss + pi recall``, so the observation itself tells which removes more
showers.  ``PROB_OBSCTX`` is always the learnt model's probability.

**Shape (option ``shape``, off by default).**  The event's own shape is
the same in both samples, so it cannot be learnt here; a shape-only model
trained on simulated randomised physics (:func:`load_shape_model`) gives
its likelihood ratio ``L(s) = p(s | CR) / p(s | X)``.  With shape and
context independent within each class, the posterior odds multiply
(:func:`combine_shape`): ``odds = P(x) / (1 - P(x)) * L(s)``.  A shower
product placed into another frame keeps its shower shape, so the
placements' rejection rate would overstate the X-ray loss by about ``pi``
times the shape's own rejection; each placement is weighted by
``1 / ((1 - pi) + pi L(s))`` instead (:func:`shape_weights`), which turns
the placements' mixture of shapes into X-ray shapes.  The ranking is then
``SHAPE`` or ``DISTANCE`` (``OBCRANK``), and ``PROB_OBSCTX`` the combined
probability.

The filter learns at the end of a run (the pipeline hands it every chunk's
sample through :func:`observe` and calls :func:`conclude`); its pipeline
step only adds the column.
"""
from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.stats import binom_conf_interval
from astropy.table import QTable

from ..calibrate import SHIFTS, covered, own_pixels, threshold_for
from ..context import DEFAULT_RADII, context_features, feature_matrix
from ..events import set_status_bit
from ..meta import log_to_metadata
from ..contract import Calibration, Card, Filter, Param
from ..units import DEFAULT_BAND, energy_values

__all__ = ["obsctx_filter", "observe", "conclude", "cross_fit_scores", "class_prior",
           "combine_shape", "shape_weights", "load_shape_model",
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
#: Fewest same-frame events the filter learns from; below it, it flags nothing.
MIN_EVENTS = 500
#: Default fraction of X-ray events the filter may reject.
DEFAULT_MAX_LOST = 0.02


# -- learning ------------------------------------------------------------------

def _classifier(seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    # small trees with large leaves: most same-frame rows are X-rays, so the
    # labels are noisy (on the CR-rich paper and high-cr checks of
    # docs/observation.rst, 7 leaves of >= 200 rows gained 0.3-1 point on
    # 15 leaves of >= 40)
    return HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_leaf_nodes=7, min_samples_leaf=200,
        l2_regularization=1.0, monotonic_cst=[MONOTONE[k] for k in FEATURES],
        class_weight="balanced", early_stopping=False, random_state=seed)


def cross_fit_scores(x_same, fold_same, x_shift, fold_shift, *, n_folds=N_FOLDS, seed=0):
    """Density-ratio scores ``r(x)`` of same-frame and shifted rows, cross-fitted.

    Parameters
    ----------
    x_same, x_shift : ndarray, shape (n, n_features) and (m, n_features)
        Features of the events in their own frames and of their placements
        in other frames.
    fold_same, fold_shift : int ndarray, shape (n,) and (m,)
        Fold of every row, in ``[0, n_folds)``.
    n_folds : int
        Number of folds (default :data:`N_FOLDS`).
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    r_same, r_shift : ndarray, shape (n,) and (m,)
        ``p_same / p_shift`` odds of the model trained without the row's fold.
        A fold without rows of both kinds in the others is scored NaN.
    """
    # one OpenMP thread: these small fits are 18x faster on a shared two-core
    # machine (1.2 s against 21 s for 6000 rows and 5 folds) than with a
    # thread per core spinning at every tree
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="openmp"):
        return _cross_fit(x_same, fold_same, x_shift, fold_shift, n_folds, seed)


def _cross_fit(x_same, fold_same, x_shift, fold_shift, n_folds, seed):
    r_same = np.full(len(x_same), np.nan)
    r_shift = np.full(len(x_shift), np.nan)
    for k in range(int(n_folds)):
        tr_s, tr_h = fold_same != k, fold_shift != k
        if not (fold_same == k).any() and not (fold_shift == k).any():
            continue
        if tr_s.sum() < 10 or tr_h.sum() < 10:
            continue
        clf = _classifier(seed + k)
        clf.fit(np.vstack([x_same[tr_s], x_shift[tr_h]]),
                np.r_[np.ones(tr_s.sum(), int), np.zeros(tr_h.sum(), int)])
        for rows, x, out in ((fold_same == k, x_same, r_same),
                             (fold_shift == k, x_shift, r_shift)):
            if rows.any():
                p = np.clip(clf.predict_proba(x[rows])[:, 1], 1e-6, 1 - 1e-6)
                out[rows] = p / (1 - p)
    return r_same, r_shift


def class_prior(r_same, r_shift, *, lo=0.01, hi=0.5, weights=None):
    """Lower bound of the shower fraction ``pi`` of the same-frame events.

    ``pi >= (A(t) - B(t)) / (1 - B(t))`` for every cut ``t`` on the scores,
    with ``A``/``B`` the fractions of same-frame/shifted scores ``>= t``.
    Each cut's value is lowered by one binomial standard error of ``A - B``
    (the largest of many noisy values would otherwise overshoot), and the
    largest over the cuts at which ``B`` is in ``[lo, hi]`` is returned
    (above ``hi`` the denominator ``1 - B`` amplifies the noise).

    Parameters
    ----------
    r_same, r_shift : ndarray
        Scores of the same-frame rows and of the placements (NaN ignored).
    lo, hi : float
        Range of ``B`` over which cuts are taken (default 1-50 %).
    weights : ndarray, optional
        One per placement: ``B`` is then their weighted fraction, and its
        error uses Kish's effective number (:func:`shape_weights`).

    Returns
    -------
    float
        In [0, 1).
    """
    ok_a, ok_b = np.isfinite(r_same), np.isfinite(r_shift)
    a = np.sort(np.asarray(r_same, float)[ok_a])
    if a.size == 0 or not ok_b.any():
        return 0.0
    w = np.ones(int(ok_b.sum())) if weights is None else np.asarray(weights, float)[ok_b]
    order = np.argsort(np.asarray(r_shift, float)[ok_b], kind="stable")
    b, w = np.asarray(r_shift, float)[ok_b][order], w[order]
    tail = np.r_[np.cumsum(w[::-1])[::-1], 0.0] / w.sum()   # weight at or above b[i]
    n_b = w.sum() ** 2 / np.sum(w ** 2)
    cuts = np.quantile(b, np.linspace(1 - hi, 1 - lo, 200))
    frac_a = 1 - np.searchsorted(a, cuts, side="left") / a.size
    frac_b = tail[np.searchsorted(b, cuts, side="left")]
    ok = (frac_b >= lo) & (frac_b <= hi)
    if not ok.any():
        return 0.0
    fa, fb = frac_a[ok], frac_b[ok]
    err = np.sqrt(fa * (1 - fa) / a.size + fb * (1 - fb) / n_b)
    pi = np.max((fa - fb - err) / (1 - fb))
    return float(np.clip(pi, 0.0, 0.999))


def _held_out_loss(r_same, fold_same, r_shift, fold_shift, weights=None):
    """X-ray loss at which each row is rejected: its fold's placements scoring as high.

    Each fold's model is judged by its own held-out placements, so the loss
    is on one scale for every fold, read off the observation.  ``weights``
    (one per placement, default 1) make it the weighted fraction of them.
    """
    loss_same = np.full(len(r_same), np.nan)
    loss_shift = np.full(len(r_shift), np.nan)
    w_all = np.ones(len(r_shift)) if weights is None else np.asarray(weights, float)
    for k in np.unique(fold_shift):
        sel = (fold_shift == k) & np.isfinite(r_shift)
        if not sel.any():
            continue
        order = np.argsort(r_shift[sel], kind="stable")
        ref, w = r_shift[sel][order], w_all[sel][order]
        # weight of the placements at or above each position, and beyond the last
        tail = np.r_[np.cumsum(w[::-1])[::-1], 0.0] / w.sum()
        for rows, r, out in ((fold_same == k, r_same, loss_same),
                             (fold_shift == k, r_shift, loss_shift)):
            ok = rows & np.isfinite(r)
            out[ok] = tail[np.searchsorted(ref, r[ok], side="left")]
    return loss_same, loss_shift


def combine_shape(prob_context, shape_ratio):
    """Shower probability of context and shape together, and the odds rule behind it.

    With the event's shape ``s`` independent of its context ``x`` within
    each class, the posterior odds of a shower product are the context
    odds learnt from the observation times the shape likelihood ratio
    ``p(s | CR) / p(s | X)`` of a shape-only model (a balanced forest, whose
    odds estimate that ratio)::

        odds(x, s) = P(x) / (1 - P(x)) * L(s),   P(x) = 1 - (1 - pi) / r(x)

    Parameters
    ----------
    prob_context : ndarray
        ``PROB_OBSCTX`` of the context alone, in [0, 1] (NaN kept).  It is
        clipped to [1e-3, 1 - 1e-3], so that the shape still orders events
        whose context is as X-ray-like as can be.
    shape_ratio : ndarray
        ``L(s)``, broadcastable to ``prob_context``.

    Returns
    -------
    ndarray
        ``odds / (1 + odds)``.
    """
    p = np.clip(np.asarray(prob_context, float), 1e-3, 1 - 1e-3)
    odds = p / (1 - p) * np.asarray(shape_ratio, float)
    return odds / (1 + odds)


def shape_weights(shape_ratio, pi):
    """Weights that turn the placements' shapes into those of X-rays.

    The placements carry the shapes of all the observation's events,
    ``p(s) = (1 - pi) p_X(s) + pi p_CR(s)``, and a shower product placed
    into another frame keeps its shower shape.  Weighting each by
    ``p_X(s) / p(s) = 1 / ((1 - pi) + pi L(s))`` makes the weighted
    rejection rate that of X-rays (importance weighting).

    Parameters
    ----------
    shape_ratio : ndarray
        ``L(s)`` of each placement's event.
    pi : float
        Shower fraction of the events (:func:`class_prior`).

    Returns
    -------
    ndarray
        Positive weights.
    """
    return 1.0 / ((1.0 - pi) + pi * np.asarray(shape_ratio, float))


def _with_shape(r_same, r_shift, ratio_same, ratio_shift, pi, rounds=10):
    """Combined scores, placement weights and the class prior with shape.

    The context-only prior is a lower bound; the combined score separates
    the classes better, so the bound taken on it (with the placements
    weighted to X-ray shapes) is tighter.  Both the weights and the
    combined score depend on ``pi``: the bound is raised until it stops
    moving (a ``pi`` below the truth under-weights shower shapes, which
    keeps every new value a lower bound).
    """
    for _ in range(rounds):
        c_same = combine_shape(_posterior(r_same, pi), ratio_same)
        c_shift = combine_shape(_posterior(r_shift, pi), ratio_shift)
        weights = shape_weights(ratio_shift, pi)
        new = max(pi, class_prior(c_same, c_shift, weights=weights))
        if new - pi < 1e-3:
            return c_same, c_shift, weights, pi
        pi = new
    return (combine_shape(_posterior(r_same, pi), ratio_same),
            combine_shape(_posterior(r_shift, pi), ratio_shift), shape_weights(ratio_shift, pi), pi)


def _weighted_threshold(loss, weights, max_lost):
    """:func:`~xcrfilter.calibrate.threshold_for` (reject ``loss <= value``) with weights.

    The achieved fraction is the weighted fraction rejected; its 68 % Wilson
    interval uses Kish's effective number ``(sum w)**2 / sum w**2``.
    """
    if weights is None:
        return threshold_for(loss, -1, max_lost, limit=1.0)
    order = np.argsort(loss, kind="stable")
    lv, w = np.asarray(loss, float)[order], np.asarray(weights, float)[order]
    # the rejected set is every placement with loss <= value: whole groups of ties
    last = np.r_[lv[1:] != lv[:-1], True]
    frac = np.cumsum(w)[last] / w.sum()
    values = lv[last]
    ok = np.flatnonzero(frac <= max_lost)
    value, achieved = (float(values[ok[-1]]), float(frac[ok[-1]])) if ok.size else (-1.0, 0.0)
    n_eff = w.sum() ** 2 / np.sum(w ** 2)
    k = achieved * n_eff
    lo, hi = binom_conf_interval(k, n_eff, confidence_level=0.6827, interval="wilson")
    return dict(value=value, achieved=achieved, lo=float(lo), hi=float(hi),
                target=float(max_lost))


def _posterior(r, pi):
    """``1 - (1 - pi) / r``, clipped to [0, 1] (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(1 - (1 - pi) / r, 0.0, 1.0)


# -- the per-chunk sample ------------------------------------------------------

def _features(data, events, common, shape_model=None):
    """Context features of ``events``; with ``shape_model`` also their shape ratio."""
    ctx = context_features(data, events, split_threshold=common["split_threshold"],
                           event_threshold=common["event_threshold"],
                           track_energy=common["mip_threshold"])
    x = np.column_stack([np.asarray(ctx[k].value if hasattr(ctx[k], "unit") else ctx[k],
                                    np.float32) for k in FEATURES])
    if shape_model is None:
        return x, None
    p = shape_model.predict_proba(feature_matrix(events, ctx, shape_model.feature_names))
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return x, p / (1 - p)


def load_shape_model():
    """The shipped shape-only model (``xcrfilter/data/shape_model``).

    A balanced random forest on :data:`xcrfilter.context.SHAPE_FEATURES`,
    trained on randomised simulated physics, read by the checked loader of
    `xcrfilter.ml.morph`.
    """
    from ..ml.morph import default_shape_dir, load_morph_model
    return load_morph_model(default_shape_dir())


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
        placement).
    """
    data = np.asarray(cube.data, np.float32)
    n, ny, nx = data.shape
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
    take = np.flatnonzero((e >= lo) & (e < hi) & (y >= 2) & (y < ny - 2) & (x >= 2)
                          & (x < nx - 2))
    shape = _on_off((options or {}).get("shape"))
    if shape:
        empty["ratio"] = np.zeros(0)
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
    active = data >= float(common["split_threshold"].to_value(u.eV))
    own, _ = own_pixels(active, f, y, x)
    rows, gs = [], []
    for k in SHIFTS:
        ok = blen > k
        g = bstart + (f - bstart + k) % np.maximum(blen, 1)
        ok &= ~covered(active, g, y, x, own)
        rows.append(np.flatnonzero(ok))
        gs.append(g[ok])
    rows, gs = np.concatenate(rows), np.concatenate(gs)
    placed = QTable(ev[rows], copy=True)
    placed["FRAME"] = gs.astype(np.int32)
    key = _event_keys(gframe, y, x)
    x_same, ratio = _features(data, ev, common, load_shape_model() if shape else None)
    x_shift, _ = _features(data, placed, common)
    out = dict(key=key, x_same=x_same, fold_same=fold, x_shift=x_shift, fold_shift=fold[rows],
               source=rows)
    if shape:
        out["ratio"] = ratio
    return out


def _event_keys(frame, rawy, rawx):
    """One int64 per event: FRAME * 2**40 + RAWY * 2**20 + RAWX (unique in an observation)."""
    return ((np.asarray(frame, np.int64) << 40) | (np.asarray(rawy, np.int64) << 20)
            | np.asarray(rawx, np.int64))


def _merge(payloads):
    names = ["key", "x_same", "fold_same", "x_shift", "fold_shift", "source"]
    if payloads and all("ratio" in p for p in payloads):
        names.append("ratio")
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
        True when the user asked for ``max_lost``: too small a sample is an
        error.  Otherwise it is a warning, and nothing is flagged.
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    dict or None
        The calibration report (``value``, ``achieved``, ``lo``, ``hi``,
        ``n``, ``placements``, ``target``, ``method``, ``prior``...), or
        None when nothing could be learnt.

    Raises
    ------
    ValueError
        ``required`` and too few events to learn from or to estimate the loss.
    """
    from ..calibrate import MIN_REJECTED
    max_lost = DEFAULT_MAX_LOST if max_lost is None else float(max_lost)
    s = _merge(payloads)
    n_same, n_shift = len(s["key"]), len(s["fold_shift"])
    events["PROB_OBSCTX"] = np.full(len(events), np.nan, np.float32)
    events["OBSCTX_LOSS"] = np.full(len(events), np.nan, np.float32)
    set_status_bit(events, OBSCTX_BIT, np.zeros(len(events), bool))
    log_to_metadata(events.meta, [("OBCSHAPE", "ratio" in s, SHAPE_CARD.comment)])
    short = n_same < MIN_EVENTS or n_shift * max_lost < 2 * MIN_REJECTED
    if short:
        msg = (f"obsctx: {n_same} events in band and {n_shift} placements in other frames; "
               f"learning needs at least {MIN_EVENTS} events and a loss of "
               f"{100 * max_lost:.3g}% at least {int(np.ceil(2 * MIN_REJECTED / max_lost))} "
               "placements: give more frames")
        if required:
            raise ValueError(msg)
        warnings.warn(msg + "; no event flagged", UserWarning, stacklevel=2)
        log_to_metadata(events.meta, history=msg + "; no event flagged")
        return None
    r_same, r_shift = cross_fit_scores(s["x_same"], s["fold_same"], s["x_shift"],
                                       s["fold_shift"], seed=seed)
    pi = class_prior(r_same, r_shift)
    ratio = s.get("ratio")
    weights = None
    if ratio is not None:
        r_same, r_shift, weights, pi = _with_shape(r_same, r_shift, ratio,
                                                   ratio[s["source"]], pi)
    # Two rankings, each held out and calibrated to the same X-ray loss: the
    # learnt one, and the distance to the nearest track alone (SAC's).  At
    # equal loss, the one that rejects more events in their own frames
    # rejects more shower products (own-frame rejection = (1 - pi) loss +
    # pi recall), so the observation itself chooses, without truth.
    candidates = {}
    dist = s["x_same"][:, FEATURES.index("TRK_DIST")].astype(float)
    dist_h = s["x_shift"][:, FEATURES.index("TRK_DIST")].astype(float)
    learnt = "LEARNT" if ratio is None else "SHAPE"
    for name, (rs, rh) in ((learnt, (r_same, r_shift)), ("DISTANCE", (-dist, -dist_h))):
        loss_same, loss_shift = _held_out_loss(rs, s["fold_same"], rh, s["fold_shift"],
                                               weights)
        good = np.isfinite(loss_shift)
        rep = _weighted_threshold(loss_shift[good],
                                  None if weights is None else weights[good], max_lost)
        own = float(np.mean(np.nan_to_num(loss_same, nan=2.0) <= rep["value"]))
        candidates[name] = (own, loss_same, good, rep)
    choice = max(candidates, key=lambda k: candidates[k][0])
    _, loss_same, good, rep = candidates[choice]
    keys = _event_keys(events["FRAME"], events["RAWY"], events["RAWX"])
    order = np.argsort(keys)
    pos = order[np.searchsorted(keys[order], s["key"])]
    prob = np.full(len(events), np.nan, np.float32)
    prob[pos] = _posterior(r_same, pi) if ratio is None else r_same
    events["PROB_OBSCTX"] = prob
    events["PROB_OBSCTX"].description = "observation-trained shower probability of the context"
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
    rep.update(method="shift", n=int(np.unique(s["source"][good]).size),
               placements=int(good.sum()), shifts=",".join(str(k) for k in SHIFTS),
               rejected=int(rej.sum()), own=own_rate, excess=own_rate - rep["achieved"],
               prior=pi, n_same=n_same, ranking=choice,
               own_rates={k: v[0] for k, v in candidates.items()})
    cards = [
        ("OBCRANK", choice, "obsctx ranking: LEARNT, SHAPE or DISTANCE"),
        ("OBCTHR", float(rep["value"]), "obsctx OBSCTX_LOSS threshold"),
        ("OBCNREJ", int(rej.sum()), f"events rejected by obsctx (bit {OBSCTX_BIT})"),
        ("OBCNSCO", int(np.isfinite(loss_same).sum()), "events scored by obsctx"),
        ("OBCPRIOR", float(pi), "obsctx: shower fraction of in-band events (bound)"),
        ("OBCFOLD", N_FOLDS, f"obsctx: folds of {BLOCK_FRAMES}-frame blocks")]
    log_to_metadata(events.meta, cards, [
        "obsctx: own-frame rejection at the calibrated loss " + ", ".join(
            f"{k.lower()} {100 * v[0]:.2f}%" for k, v in candidates.items())
        + f": {choice.lower()} ranking used",
        f"obsctx: learnt from {n_same} events in their own frames and "
        f"{n_shift} placements in other frames ({N_FOLDS} folds of "
        f"{BLOCK_FRAMES}-frame blocks); shower fraction >= {pi:.3f}; threshold "
        f"{rep['value']:.4f}: {int(rej.sum())} events rejected"])
    return rep


# -- the filter and its pipeline plug-in --------------------------------------

def obsctx_filter(frames, events=None, *, max_lost=DEFAULT_MAX_LOST, event_threshold=260 * u.eV,
                  split_threshold=80 * u.eV, mip_threshold=10 * u.keV, gain=None,
                  detector=None, shape=False, seed=0):
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
        the shipped shape-only model (:func:`combine_shape`; the loss
        estimate then weights the placements by :func:`shape_weights`).
        Default False: context only.
    seed : int
        Random state of the tree ensembles.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``PROB_OBSCTX`` (float32, NaN where
        not scored: outside 0.3-10 keV or within 2 pixels of the frame edge)
        and STATUS bit 9; header cards ``OBCTHR``, ``OBCNREJ``, ``OBCNSCO``,
        ``OBCPRIOR``, ``OBCFOLD``, the frame-shift loss estimate
        (``OBCCALF``, ``OBCCALLO``, ``OBCCALHI``, ``OBCCALN``) and HISTORY.

    Raises
    ------
    ValueError
        Too few events to learn from, bad frames or thresholds.
    """
    from ..calibrate import write_calibration_cards
    from .probability import cube_and_events
    cube, events = cube_and_events(
        frames, events, "obsctx_filter", "the context is learnt from the whole observation",
        event_threshold=event_threshold, split_threshold=split_threshold,
        mip_threshold=mip_threshold, gain=gain, detector=detector)
    common = dict(event_threshold=event_threshold, split_threshold=split_threshold,
                  mip_threshold=mip_threshold)
    out = QTable(events, copy=True)
    payload = observe(cube, out, common, {"shape": _on_off(shape)})
    rep = conclude(out, [payload], max_lost=max_lost, required=True, seed=seed)
    write_calibration_cards(out.meta, {"obsctx": FILTER}, {"obsctx": rep})
    return out


def pipeline_step(cube, events, *, max_lost=None, shape=False):
    """Pipeline step ``obsctx``: the column, unscored until the run ends (:func:`conclude`)."""
    _on_off(shape)
    out = QTable(events, copy=True)
    out["PROB_OBSCTX"] = np.full(len(out), np.nan, np.float32)
    out["OBSCTX_LOSS"] = np.full(len(out), np.nan, np.float32)
    set_status_bit(out, OBSCTX_BIT, np.zeros(len(out), bool))
    return out


#: The header card of the ``shape`` option.
SHAPE_CARD = Card("OBCSHAPE", "obsctx: context odds times the shape ratio")


def _on_off(value):
    """The ``shape`` option as a bool: True/False or 'on'/'off'."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return bool(value)
    if value in ("on", "off"):
        return value == "on"
    raise ValueError(f"obsctx option shape must be 'on', 'off', True or False, got {value!r}.")


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
                  card=SHAPE_CARD)),
    calibration=CALIBRATION,
    observe=observe, conclude=conclude,
)
