"""Positive-unlabelled learning of shower context from one observation.

The learning behind `xcrfilter.filters.obsctx`, kept apart from the filter's
plumbing.  Two samples of the same events: in their own frames (a mixture,
a fraction ``pi`` of shower products) and placed into other frames of the
observation (X-ray-like by construction).  A classifier of the two with
balanced classes estimates the density ratio ``r(x) = p_same(x) / p_X(x)``
(:func:`cross_fit_scores`, cross-fitted over blocks of frames); the class
prior follows as the largest lower bound over score cuts
(:func:`class_prior`, mixture-proportion estimation in the sense of
Blanchard, Lee & Scott 2010, JMLR 11, 2973); the shower probability is
``1 - (1 - pi) / r`` (:func:`posterior`).  A shape likelihood ratio from a
simulator-trained model multiplies the odds (:func:`combine_shape`); the
prior is then bounded again with the placements importance-weighted to
X-ray shapes (:func:`shape_weights`, :func:`with_shape`), and the loss is
estimated with each placement weighted by the probability that its event
is an X-ray, judged in its own frame from its context
(:func:`source_weights`).  Every event's loss is the fraction of all the
(cross-fitted) placements scoring as high (:func:`placement_loss`), and the
threshold is the (weighted) fraction of them asked for
(:func:`weighted_threshold`).  Two estimates of the posterior are averaged
in log odds (:func:`mean_log_odds`).
"""
from __future__ import annotations

import numpy as np
from astropy.stats import binom_conf_interval


__all__ = ["cross_fit_scores", "class_prior", "placement_loss", "combine_shape",
           "shape_weights", "source_weights", "with_shape", "weighted_threshold", "posterior",
           "effective_number", "mean_log_odds"]


def _classifier(seed, monotone):
    from sklearn.ensemble import HistGradientBoostingClassifier
    # small trees with large leaves: most same-frame rows are X-rays, so the
    # labels are noisy (on the CR-rich paper and high-cr checks of
    # docs/observation.rst, 7 leaves of >= 200 rows gained 0.3-1 point on
    # 15 leaves of >= 40)
    return HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_leaf_nodes=7, min_samples_leaf=200,
        l2_regularization=1.0, monotonic_cst=monotone,
        class_weight="balanced", early_stopping=False, random_state=seed)


def cross_fit_scores(x_same, fold_same, x_shift, fold_shift, *, n_folds=5, monotone=None,
                     seed=0):
    """Density-ratio scores ``r(x)`` of same-frame and shifted rows, cross-fitted.

    Parameters
    ----------
    x_same, x_shift : ndarray, shape (n, n_features) and (m, n_features)
        Features of the events in their own frames and of their placements
        in other frames.
    fold_same, fold_shift : int ndarray, shape (n,) and (m,)
        Fold of every row, in ``[0, n_folds)``.
    n_folds : int
        Number of folds (default 5).
    monotone : sequence of {-1, 0, +1}, optional
        Per feature, the direction in which it may move the same-frame odds
        (scikit-learn's ``monotonic_cst``); default free.
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
        return _cross_fit(x_same, fold_same, x_shift, fold_shift, n_folds, monotone, seed)


def _cross_fit(x_same, fold_same, x_shift, fold_shift, n_folds, monotone, seed):
    r_same = np.full(len(x_same), np.nan)
    r_shift = np.full(len(x_shift), np.nan)
    for k in range(int(n_folds)):
        tr_s, tr_h = fold_same != k, fold_shift != k
        if not (fold_same == k).any() and not (fold_shift == k).any():
            continue
        if tr_s.sum() < 10 or tr_h.sum() < 10:
            continue
        clf = _classifier(seed + k, monotone)
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


def placement_loss(r_same, r_shift, weights=None):
    """X-ray loss at which each row is rejected: the placements scoring as high.

    ``loss_same[i]`` is the (weighted) fraction of all the placements whose
    score is at least ``r_same[i]``, i.e. the X-ray loss at which event
    ``i`` would be rejected; likewise ``loss_shift`` for the placements
    themselves.  The scores are the cross-fitted ones
    (:func:`cross_fit_scores`), and one threshold is taken over the
    placements of every fold: in each fold it rejects the fraction that
    fold's model gives its own placements, so the estimate is their mean,
    from all the placements at once.  NaN scores stay NaN.

    Parameters
    ----------
    r_same, r_shift : ndarray, shape (n,) and (m,)
        Scores of the same-frame rows and of the placements.
    weights : ndarray, shape (m,), optional
        One per placement (default 1).

    Returns
    -------
    loss_same, loss_shift : ndarray, shape (n,) and (m,)
        In [0, 1]; NaN where the score is NaN or no placement is scored.
    """
    r_same, r_shift = np.asarray(r_same, float), np.asarray(r_shift, float)
    loss_same = np.full(r_same.shape, np.nan)
    loss_shift = np.full(r_shift.shape, np.nan)
    w_all = np.ones(r_shift.size) if weights is None else np.asarray(weights, float)
    sel = np.isfinite(r_shift)
    if not sel.any():
        return loss_same, loss_shift
    order = np.argsort(r_shift[sel], kind="stable")
    ref, w = r_shift[sel][order], w_all[sel][order]
    # weight of the placements at or above each position, and beyond the last
    tail = np.r_[np.cumsum(w[::-1])[::-1], 0.0] / w.sum()
    for r, out in ((r_same, loss_same), (r_shift, loss_shift)):
        ok = np.isfinite(r)
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


def source_weights(prob_source):
    """Weights that turn the placements into placements of X-ray events.

    A placement carries its event's own pixels into another frame, so an
    own-shape score rates the placements of shower products as showers.
    Weighting each placement by the probability that its event is an X-ray,
    ``1 - q`` with ``q`` the event's posterior in its own frame
    (cross-fitted), makes the weighted rejection rate that of X-ray events:
    ``E[(1 - q) g] / E[1 - q] = E[g | X]`` for any rejection ``g`` of the
    event's shape when ``q`` is calibrated.  `xcrfilter.filters.obsctx`
    takes ``q = P(CR | x)`` from the event's context alone: an X-ray's
    context in its own frame is independent of its shape, so where ``q`` is
    off the X-ray part of the estimate stays unbiased, and the showers whose
    context looks like an X-ray's keep their weight, which errs towards a
    higher loss.  With ``q`` from context and shape together (the previous
    version) the X-rays of shower-like shape counted less exactly where
    their placements are rejected, and ordinary runs of 2500 frames realised
    up to 2.9 % at an estimated 2 % (:ref:`observation`).

    Parameters
    ----------
    prob_source : ndarray
        ``q`` of each placement's event, in [0, 1]; NaN (an event no model
        scored) counts as 0.

    Returns
    -------
    ndarray
        ``1 - q``, in [0, 1].
    """
    q = np.nan_to_num(np.asarray(prob_source, float), nan=0.0)
    return np.clip(1.0 - q, 0.0, 1.0)


def with_shape(r_same, r_shift, ratio_same, ratio_shift, pi, rounds=10):
    """Combined scores, placement weights and the class prior with shape.

    The context-only prior is a lower bound; the combined score separates
    the classes better, so the bound taken on it (with the placements
    weighted to X-ray shapes) is tighter.  Both the weights and the
    combined score depend on ``pi``: the bound is raised until it stops
    moving (a ``pi`` below the truth under-weights shower shapes, which
    keeps every new value a lower bound).
    """
    for _ in range(rounds):
        c_same = combine_shape(posterior(r_same, pi), ratio_same)
        c_shift = combine_shape(posterior(r_shift, pi), ratio_shift)
        weights = shape_weights(ratio_shift, pi)
        new = max(pi, class_prior(c_same, c_shift, weights=weights))
        if new - pi < 1e-3:
            return c_same, c_shift, weights, pi
        pi = new
    return (combine_shape(posterior(r_same, pi), ratio_same),
            combine_shape(posterior(r_shift, pi), ratio_shift), shape_weights(ratio_shift, pi), pi)


def weighted_threshold(loss, weights, max_lost):
    """:func:`~xcrfilter.calibrate.threshold_for` (reject ``loss <= value``) with weights.

    The achieved fraction is the weighted fraction rejected; its 68 % Wilson
    interval uses Kish's effective number ``(sum w)**2 / sum w**2``
    (:func:`effective_number`).
    """
    order = np.argsort(loss, kind="stable")
    lv, w = np.asarray(loss, float)[order], np.asarray(weights, float)[order]
    # the rejected set is every placement with loss <= value: whole groups of ties
    last = np.r_[lv[1:] != lv[:-1], True]
    frac = np.cumsum(w)[last] / w.sum()
    values = lv[last]
    ok = np.flatnonzero(frac <= max_lost)
    value, achieved = (float(values[ok[-1]]), float(frac[ok[-1]])) if ok.size else (-1.0, 0.0)
    n_eff = effective_number(w)
    k = achieved * n_eff
    lo, hi = binom_conf_interval(k, n_eff, confidence_level=0.6827, interval="wilson")
    return dict(value=value, achieved=achieved, lo=float(lo), hi=float(hi),
                target=float(max_lost))


def effective_number(weights):
    """Kish's effective number of weighted rows, ``(sum w)**2 / sum w**2`` (0 when all are 0)."""
    w = np.asarray(weights, float)
    sq = float(np.sum(w ** 2))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def mean_log_odds(*probs):
    """The probability whose log odds are the mean of those of ``probs``.

    Two estimates of the same posterior, here the shower probability of
    context and shape learnt partly from the observation
    (:func:`combine_shape`) and one learnt wholly on the simulator, are
    averaged in log odds (the geometric mean of their odds): each moves the
    result as far as it is confident, and a ranking by the mean sorts the
    events by the sum of the two log odds.

    Parameters
    ----------
    *probs : ndarray
        Probabilities in [0, 1], broadcastable; each is clipped to
        [1e-6, 1 - 1e-6] (NaN stays NaN).

    Returns
    -------
    ndarray
        In (0, 1).
    """
    logit = [np.log(p / (1 - p)) for p in
             (np.clip(np.asarray(q, float), 1e-6, 1 - 1e-6) for q in probs)]
    return 1 / (1 + np.exp(-np.mean(logit, axis=0)))


def posterior(r, pi):
    """``1 - (1 - pi) / r``, clipped to [0, 1] (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(1 - (1 - pi) / r, 0.0, 1.0)
