"""ROC curves of a score against the truth, and the threshold at a lost X-ray signal.

Events with ``score >= threshold`` are rejected; the curve runs over every
distinct score (:func:`roc_curve`), and :func:`threshold_at_fpr` picks the
threshold that loses at most a given fraction of the X-ray events (seed
paper Sec. 4.2: the CAM filter's threshold).
"""
from __future__ import annotations

from collections import namedtuple

import astropy.units as u
import numpy as np

from .selection import as_truth

__all__ = ["ThresholdChoice", "roc_curve", "threshold_at_fpr"]


ThresholdChoice = namedtuple("ThresholdChoice", ["threshold", "fpr", "recall"])
ThresholdChoice.__doc__ = """Result of :func:`threshold_at_fpr`.

Attributes
----------
threshold : float
    Score threshold; events with ``score >= threshold`` are rejected.
fpr : float
    Lost X-ray signal at this threshold.
recall : float
    CR completeness at this threshold.
"""


def roc_curve(truth_is_cr, score):
    """Receiver operating characteristic: recall vs lost X-ray signal.

    An event is rejected when ``score >= threshold``.  Computed by
    `sklearn.metrics.roc_curve` (every distinct score a threshold), whose
    false-positive rate is the paper's lost X-ray signal (Eq. 6) and whose
    true-positive rate its recall (Eq. 4), CR being the positive class.

    Parameters
    ----------
    truth_is_cr : array of bool or int, shape (n,)
        As in :func:`confusion`.
    score : array of float, shape (n,)
        CR score (e.g. ``PROB_CR``); larger means more CR-like.

    Returns
    -------
    fpr : `numpy.ndarray`
        Lost X-ray signal (Eq. 6) at each threshold, non-decreasing.
    recall : `numpy.ndarray`
        CR completeness (Eq. 4) at each threshold, non-decreasing.
    thresholds : `numpy.ndarray`
        Decreasing thresholds; the first is ``+inf`` (nothing rejected,
        fpr = recall = 0), then every distinct score.

    Raises
    ------
    ValueError
        If ``score`` has NaN values or the shapes differ.
    """
    is_cr, valid = as_truth(truth_is_cr)
    score = np.asarray(score, dtype=float)
    if score.shape != is_cr.shape:
        raise ValueError(f"score has shape {score.shape}, but truth_is_cr has {is_cr.shape}.")
    if np.isnan(score).any():
        raise ValueError("score contains NaN values; every event needs a finite score.")
    is_cr, score = is_cr[valid], score[valid]
    if not score.size:
        return np.array([np.nan]), np.array([np.nan]), np.array([np.inf])
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve as _sk_roc_curve
    with warnings.catch_warnings():
        # one class only: its rate is nan, as documented
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, rec, thresholds = _sk_roc_curve(is_cr, score, drop_intermediate=False)
    return fpr, rec, thresholds


def threshold_at_fpr(truth, score, target_fpr):
    """Lowest score threshold whose lost X-ray signal is at most ``target_fpr``.

    This is how the paper picks its operating point from the ROC curve
    (Sec. 4: threshold 0.77, recall 43.7 % at 1.82 % lost X-ray signal).

    Parameters
    ----------
    truth : array of bool or int, shape (n,)
    score : array of float, shape (n,)
    target_fpr : float
        Largest acceptable lost X-ray fraction, in [0, 1] (a Quantity in
        percent is accepted too).

    Returns
    -------
    ThresholdChoice
        ``threshold`` (reject ``score >= threshold``; ``inf`` if no threshold
        meets the target), and the ``fpr`` and ``recall`` there.
    """
    if isinstance(target_fpr, u.Quantity):
        target_fpr = target_fpr.to_value(u.dimensionless_unscaled)
    target = float(target_fpr)
    if not 0 <= target <= 1:
        raise ValueError(f"target_fpr must be a fraction in [0, 1], got {target_fpr}.")
    fpr, rec, thr = roc_curve(truth, score)
    if np.isnan(fpr).all():
        raise ValueError("truth has no X-ray events: the FPR is undefined.")
    ok = np.nonzero(fpr <= target)[0]
    i = ok[-1]
    return ThresholdChoice(float(thr[i]), float(fpr[i]), float(rec[i]))
