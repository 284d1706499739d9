"""Quality metrics of cosmic-ray filters, as defined in the seed paper Sec. 3.4.

The cosmic-ray (CR) class is the *positive* class and an event that a filter
*rejects* is a predicted CR.  With

* TP = CR events rejected,      FN = CR events kept,
* FP = X-ray events rejected,   TN = X-ray events kept,

the paper's metrics are (equation numbers of the seed paper):

==========================================  ======================================  ====
accuracy                                    (TP + TN) / (TP + TN + FP + FN)         Eq. 2
precision (purity of the rejected sample)   TP / (TP + FP)                          Eq. 3
recall, TPR (CR completeness)               TP / (TP + FN)                          Eq. 4
F1                                          2 P R / (P + R)                         Eq. 5
lost X-ray signal, FPR                      FP / (TN + FP)                          Eq. 6
unrejected CR background, FOR               FN / (TN + FN)                          Eq. 7
FOR relative improvement                    1 - FOR(method) / FOR(reference)        Eq. 8
==========================================  ======================================  ====

All metrics are fractions (0..1); :func:`table2` reports them in percent as
the paper's Table 2 does.  A metric whose denominator is zero is ``nan``
(for example the precision of a filter that rejects nothing); no warning is
emitted.

Events are selected by reconstructed energy in a band, by default
0.3 keV <= ENERGY < 10 keV (lower end inclusive, upper end exclusive, the
same convention as the ``[event threshold, MIP threshold)`` energy cut;
:mod:`xcrfilter.evaluation.selection`).  ROC curves are in
:mod:`xcrfilter.evaluation.roc`.
"""
from __future__ import annotations

from collections import namedtuple

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..units import DEFAULT_BAND
from .selection import as_rejected, as_truth, select_band

__all__ = ["Confusion", "confusion", "accuracy", "precision", "recall", "f1_score",
           "lost_xray_signal", "unrejected_cr_background", "for_relative_improvement", "summary",
           "event_metrics", "table2", "TABLE2_ROWS", "DEFAULT_BAND", "fraction_interval",
           "ONE_SIGMA"]


Confusion = namedtuple("Confusion", ["tp", "fp", "tn", "fn"])
Confusion.__doc__ = """Confusion matrix with CR as the positive class.

Attributes
----------
tp : int
    CR events rejected.
fp : int
    X-ray events rejected (lost signal).
tn : int
    X-ray events kept.
fn : int
    CR events kept (unrejected background).
"""

#: Row names of :func:`table2` (the paper's Table 2) and the summary key of each.
TABLE2_ROWS = (
    ("F1", "f1"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("Lost X-RAY signal (FPR)", "fpr"),
    ("CR in detected signal (FOR)", "for"),
    ("FOR relative improvement", "for_improvement"),
)


def _ratio(num, den):
    num = float(num)
    den = float(den)
    return num / den if den != 0 else float("nan")


def _as_confusion(cm):
    if isinstance(cm, Confusion):
        return cm
    if isinstance(cm, dict):
        return Confusion(*(int(cm[k]) for k in Confusion._fields))
    values = tuple(cm)
    if len(values) != 4:
        raise TypeError(f"cm must be a Confusion (tp, fp, tn, fn), got {cm!r}.")
    return Confusion(*values)


def accuracy(cm):
    """(TP + TN) / (TP + TN + FP + FN), seed paper Eq. 2; nan if no events."""
    cm = _as_confusion(cm)
    return _ratio(cm.tp + cm.tn, cm.tp + cm.tn + cm.fp + cm.fn)


def precision(cm):
    """TP / (TP + FP), seed paper Eq. 3; nan if nothing was rejected."""
    cm = _as_confusion(cm)
    return _ratio(cm.tp, cm.tp + cm.fp)


def recall(cm):
    """TP / (TP + FN) (CR completeness, TPR), seed paper Eq. 4; nan if no CR events."""
    cm = _as_confusion(cm)
    return _ratio(cm.tp, cm.tp + cm.fn)


def f1_score(cm):
    """2 P R / (P + R), seed paper Eq. 5; nan if P or R is nan, 0 if P + R = 0."""
    p, r = precision(cm), recall(cm)
    if np.isnan(p) or np.isnan(r):
        return float("nan")
    return _ratio(2 * p * r, p + r) if p + r > 0 else 0.0


def lost_xray_signal(cm):
    """Lost X-ray signal, FPR = FP / (TN + FP), seed paper Eq. 6; nan if no X-rays."""
    cm = _as_confusion(cm)
    return _ratio(cm.fp, cm.tn + cm.fp)


def unrejected_cr_background(cm):
    """Unrejected CR background, FOR = FN / (TN + FN), seed paper Eq. 7.

    nan if every event was rejected (no predicted X-rays).
    """
    cm = _as_confusion(cm)
    return _ratio(cm.fn, cm.tn + cm.fn)


#: Confidence level of :func:`fraction_interval`: the 1-sigma (68.27 %) interval.
ONE_SIGMA = 0.682689492


def fraction_interval(k, n, confidence_level=ONE_SIGMA):
    """Wilson score interval of a fraction ``k / n`` (e.g. a recall or a lost X-ray fraction).

    Parameters
    ----------
    k : int or array of int
        Successes (e.g. CR events rejected), ``0 <= k <= n``.
    n : int or array of int
        Trials (e.g. CR events in the band).
    confidence_level : float, optional
        Default 0.6827 (1 sigma).

    Returns
    -------
    lo, hi : float or ndarray
        Interval bounds as fractions (0..1); ``nan`` where ``n == 0``.

    Raises
    ------
    ValueError
        If ``k`` is negative or larger than ``n``.

    Notes
    -----
    Computed by `astropy.stats.binom_conf_interval` (``interval="wilson"``),
    which stays inside [0, 1] and is sensible at ``k = 0`` and ``k = n``.
    """
    from astropy.stats import binom_conf_interval
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}.")
    safe = np.where(n > 0, n, 1)
    lo, hi = binom_conf_interval(np.minimum(k, safe), safe, confidence_level=confidence_level,
                                 interval="wilson")
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def for_relative_improvement(for_method, for_reference):
    """1 - FOR(method) / FOR(reference), seed paper Eq. 8.

    Parameters
    ----------
    for_method, for_reference : float or `Confusion`
        FOR values (fractions) or confusion matrices to take them from.

    Returns
    -------
    float
        Positive when the method leaves less CR background than the
        reference; nan if either FOR is nan or the reference FOR is 0.
    """
    if not np.isscalar(for_method):
        for_method = unrejected_cr_background(for_method)
    if not np.isscalar(for_reference):
        for_reference = unrejected_cr_background(for_reference)
    for_method, for_reference = float(for_method), float(for_reference)
    if np.isnan(for_method) or np.isnan(for_reference) or for_reference == 0:
        return float("nan")
    return 1.0 - for_method / for_reference


def confusion(truth_is_cr, rejected):
    """Confusion matrix of a filter's rejections against the truth.

    Parameters
    ----------
    truth_is_cr : array of bool or int, shape (n,)
        True for CR events (bool), or class labels 0 (noise, ignored),
        1 (X-ray), 2 (CR) as returned by ``xcrfilter.simulate.event_truth``.
    rejected : array of bool, shape (n,)
        True where the filter rejected the event (predicted CR).

    Returns
    -------
    Confusion
        (tp, fp, tn, fn) counts, CR = positive class (seed paper Sec. 3.4).

    Raises
    ------
    TypeError
        If ``rejected`` is not bool, or ``truth_is_cr`` is neither bool nor int.
    ValueError
        If the shapes differ or a label is not 0, 1 or 2.

    Notes
    -----
    The counts are those of `sklearn.metrics.confusion_matrix` with labels
    ``[False, True]`` (``[[tn, fp], [fn, tp]]``, checked by the tests); they
    are counted here with `numpy.count_nonzero`, 40-200 times faster on
    1e3-1e6 events, because the ROC sweeps of `xcrfilter.evaluation.compare` take
    hundreds of them per report.
    """
    is_cr, valid = as_truth(truth_is_cr)
    rej = as_rejected(rejected, "rejected", is_cr.size)
    is_cr, rej = is_cr[valid], rej[valid]
    tp = int(np.count_nonzero(is_cr & rej))
    fp = int(np.count_nonzero(~is_cr & rej))
    tn = int(np.count_nonzero(~is_cr & ~rej))
    fn = int(np.count_nonzero(is_cr & ~rej))
    return Confusion(tp, fp, tn, fn)


def summary(cm, reference=None):
    """All metrics of one confusion matrix as a dict of fractions.

    Parameters
    ----------
    cm : `Confusion`
    reference : `Confusion` or float, optional
        Reference filter (or its FOR) for the FOR relative improvement.

    Returns
    -------
    dict
        ``tp, fp, tn, fn, n_cr, n_xray, accuracy, precision, recall, f1, fpr,
        for, for_improvement`` (nan without a reference).
    """
    cm = _as_confusion(cm)
    out = dict(cm._asdict())
    out.update(n_cr=cm.tp + cm.fn, n_xray=cm.tn + cm.fp, accuracy=accuracy(cm),
               precision=precision(cm), recall=recall(cm), f1=f1_score(cm),
               fpr=lost_xray_signal(cm), **{"for": unrejected_cr_background(cm)})
    out["for_improvement"] = (for_relative_improvement(out["for"], reference)
                              if reference is not None else float("nan"))
    return out


def event_metrics(events, truth, rejected, band=DEFAULT_BAND, reference=None):
    """Metrics of one filter on the events in an energy band.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Event table with an ``ENERGY`` column (energy unit).
    truth : array of bool or int, shape (n_events,)
        True / 2 for CR events, False / 1 for X-rays, 0 for noise events
        (noise events are left out of every count).
    rejected : array of bool, shape (n_events,)
        True where the filter rejected the event.
    band : `~astropy.units.Quantity` [energy], shape (2,), optional
        Events with ``band[0] <= ENERGY < band[1]`` count.  Default 0.3-10 keV.
    reference : array of bool, shape (n_events,), optional
        Rejections of the reference (traditional) filter, for the FOR
        relative improvement (Eq. 8).

    Returns
    -------
    dict
        As :func:`summary`, plus ``n_events`` (events in the band with a true
        class) and ``band`` (the band used).

    Raises
    ------
    TypeError, ValueError
        Bad types, shapes or labels (each message names the argument).
    """
    in_band = select_band(events, band)
    n = len(events)
    is_cr, valid = as_truth(truth, "truth")
    if is_cr.size != n:
        raise ValueError(f"truth has {is_cr.size} values but events has {n} rows.")
    rej = as_rejected(rejected, "rejected", n)
    keep = in_band & valid
    cm = confusion(is_cr[keep], rej[keep])
    ref = None
    if reference is not None:
        ref = confusion(is_cr[keep], as_rejected(reference, "reference", n)[keep])
    out = summary(cm, ref)
    out["n_events"] = int(np.count_nonzero(keep))
    out["band"] = u.Quantity(band).to(u.keV)
    return out


def table2(truth, rejections, *, events=None, band=DEFAULT_BAND, reference=None):
    """The seed paper's Table 2 layout for several filters, in percent.

    Parameters
    ----------
    truth : array of bool or int, shape (n_events,)
        As in :func:`confusion`.
    rejections : dict of str to array of bool
        Method name to its rejections, one column of the table each (in the
        dict's order).
    events : `~astropy.table.Table`, optional
        If given, only events with ``band[0] <= ENERGY < band[1]`` count.
    band : `~astropy.units.Quantity` [energy], optional
        Default 0.3-10 keV.
    reference : str, optional
        Key of ``rejections`` used as the reference of the FOR relative
        improvement (Eq. 8).  Default: the last method if there is more than
        one (the paper lists the traditional filter last), else none.  The
        reference's own improvement is nan (the paper's "-").

    Returns
    -------
    `~astropy.table.QTable`
        Column ``metric`` (row names of :data:`TABLE2_ROWS`) and one column
        per method in percent (``u.percent``).  ``meta`` has the counts of
        each method's confusion matrix and the band.
    """
    if not isinstance(rejections, dict) or not rejections:
        raise TypeError("rejections must be a non-empty dict of method name to bool array.")
    is_cr, valid = as_truth(truth, "truth")
    keep = valid.copy()
    if events is not None:
        if len(events) != is_cr.size:
            raise ValueError(f"truth has {is_cr.size} values but events has "
                             f"{len(events)} rows.")
        keep &= select_band(events, band)
    if reference is None and len(rejections) > 1:
        reference = list(rejections)[-1]
    if reference is not None and reference not in rejections:
        raise ValueError(f"reference {reference!r} is not a key of rejections "
                         f"({list(rejections)}).")
    cms = {name: confusion(is_cr[keep], as_rejected(rej, f"rejections[{name!r}]",
                                                 is_cr.size)[keep])
           for name, rej in rejections.items()}
    ref_cm = cms[reference] if reference is not None else None
    table = QTable()
    table["metric"] = [row for row, _ in TABLE2_ROWS]
    for name, cm in cms.items():
        s = summary(cm, ref_cm if name != reference else None)
        table[name] = np.array([100.0 * s[key] for _, key in TABLE2_ROWS]) * u.percent
        table.meta[name] = dict(cm._asdict())
    table.meta["band"] = str(u.Quantity(band).to(u.keV)) if events is not None else "all"
    table.meta["reference"] = reference
    return table


