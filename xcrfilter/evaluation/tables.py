"""The comparison tables: the seed paper's metrics for every method and band.

:func:`compare_table` gives, for each filter alone and for its union with
VF, the metrics of the seed paper (Sec. 3.4, Table 2) in the full 0.3-10 keV
range and in the bands 0.3-1, 1-2, 2-4, 4-8 and 8-10 keV (:data:`BANDS`);
:func:`roc_sweeps` the ROC curves of the filters with a score column.

Definitions (CR = positive class, events with truth X-ray or CR only):

* an event is *rejected* by a method when any of the method's ``STATUS``
  bits is set (:func:`xcrfilter.evaluation.selection.method_mask`; VF: bits 0-2, LACOSMIC: 3, SAC: 4,
  CAM: 5, MORPH: 6; a union rejects when either member does);
* TP = CR rejected, FN = CR accepted, FP = X-ray rejected, TN = X-ray accepted;
* precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R);
* lost X-ray signal FPR = FP/(TN+FP); unrejected background FOR = FN/(TN+FN);
* FOR relative improvement = 1 - FOR(method)/FOR(VF) in the same band.

Bands are half-open in reconstructed ``ENERGY``: [lo, hi).  Events whose
central pixel carries no simulated signal (truth 0, noise) are counted in
``N_NOISE`` but enter no metric.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import Table

from .. import registry
from ..units import DEFAULT_BAND, energy_values
from .selection import rejected

__all__ = ["BANDS", "FULL_BAND", "band_masks", "event_truth_labels", "available_report_methods",
           "compare_table", "format_table", "roc_sweeps"]

#: Energy bands of the report, keV, half-open [lo, hi) (seed paper Fig. 3b).
BANDS = ((0.3, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 10.0))
#: Full evaluation range, keV (seed paper Sec. 3.4).
FULL_BAND = tuple(float(e) for e in DEFAULT_BAND.to_value(u.keV))


def band_masks(energy, bands=BANDS, full=FULL_BAND):
    """Boolean selection of events per energy band.

    Parameters
    ----------
    energy : `~astropy.units.Quantity` [energy], shape (n,)
        Reconstructed event energies.
    bands : sequence of (lo, hi) in keV
    full : (lo, hi) in keV

    Returns
    -------
    dict
        ``"0.3-10"`` -> mask of the full range, then ``"lo-hi"`` per band, all
        half-open [lo, hi).
    """
    if not isinstance(energy, u.Quantity):
        raise TypeError("energy must be a Quantity in energy units.")
    e = energy.to_value(u.keV)
    out = {}
    for lo, hi in (full,) + tuple(bands):
        out[f"{lo:g}-{hi:g}"] = (e >= lo) & (e < hi)
    return out


def event_truth_labels(events, labels):
    """Truth class of each event = label of its central pixel (0 noise, 1 X-ray, 2 CR).

    Thin wrapper of :func:`xcrfilter.simulate.event_truth` returning int8.
    """
    from ..simulate import event_truth
    return np.asarray(event_truth(events, labels)).astype(np.int8)


def _rates(tp, fp, tn, fn):
    """Seed-paper metrics of one confusion matrix (``xcrfilter.evaluation.metrics``)."""
    from . import metrics
    cm = metrics.Confusion(int(tp), int(fp), int(tn), int(fn))
    return dict(PRECISION=metrics.precision(cm), RECALL=metrics.recall(cm),
                F1=metrics.f1_score(cm), FPR=metrics.lost_xray_signal(cm),
                FOR=metrics.unrejected_cr_background(cm))


def _counts(is_cr, is_xray, rej):
    """(TP, FP, TN, FN) with ``xcrfilter.evaluation.metrics.confusion`` on the X-ray/CR events."""
    from .metrics import confusion
    valid = is_cr | is_xray
    return tuple(confusion(is_cr[valid], rej[valid]))


def available_report_methods(events):
    """Single methods whose filter ran on ``events`` (from ``meta['FILTERS']``)."""
    from ..meta import card_value
    ran = card_value(events.meta, "FILTERS", None)
    if ran:
        ran = [s.strip() for s in str(ran).split(",")]
        return [label for label, name in registry.report_names().items() if name in ran]
    return list(registry.report_names())


def _require_columns(events, names, where):
    """ValueError naming the missing columns (never a bare KeyError)."""
    colnames = getattr(events, "colnames", None)
    if colnames is None:
        raise TypeError(f"{where}: events must be an astropy Table, got "
                        f"{type(events).__name__}.")
    missing = [c for c in names if c not in colnames]
    if missing:
        raise ValueError(f"{where}: events lack column(s) {missing}.")


def compare_table(events, truth, methods=None, *, bands=BANDS, full=FULL_BAND,
                  reference="VF"):
    """Table 2 of the seed paper for every method and band.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with ``ENERGY`` and ``STATUS`` (all filters already applied).
    truth : int ndarray, shape (n_events,)
        0 noise, 1 X-ray, 2 CR (see :func:`event_truth_labels`).
    methods : list of str, optional
        Method names or unions, e.g. ``["VF", "SAC", "VF+SAC"]``.  Default:
        every single method that ran plus its union with VF.
    reference : str
        Method whose FOR defines the relative improvement.  Default ``"VF"``.

    Returns
    -------
    `~astropy.table.Table`
        One row per (method, band): ``METHOD``, ``BAND``, ``E_LO``, ``E_HI``
        [keV], ``N_XRAY``, ``N_CR``, ``N_NOISE``, ``TP``, ``FP``, ``TN``,
        ``FN``, ``F1``, ``PRECISION``, ``RECALL``, ``FPR`` (lost X-ray),
        ``FOR``, ``FOR_IMPR`` (fractions, not percent).
    """
    from .metrics import for_relative_improvement
    _require_columns(events, ("ENERGY", "STATUS"), "compare_table")
    truth = np.asarray(truth)
    if truth.shape != (len(events),):
        raise ValueError(f"truth must have shape ({len(events)},), got {truth.shape}.")
    if methods is None:
        singles = available_report_methods(events)
        methods = singles + [f"VF+{m}" for m in singles if m != "VF" and "VF" in singles]
    energy = energy_values(events["ENERGY"], u.keV) * u.keV
    sel = band_masks(energy, bands, full)
    is_cr, is_xray, is_noise = truth == 2, truth == 1, truth == 0
    rows = []
    ref_for = {}
    ref_rej = rejected(events, reference) if reference else None
    for band, m in sel.items():
        if ref_rej is not None:
            tp, fp, tn, fn = _counts(is_cr & m, is_xray & m, ref_rej)
            ref_for[band] = _rates(tp, fp, tn, fn)["FOR"]
    for method in methods:
        rej = rejected(events, method)
        for band, m in sel.items():
            lo, hi = (float(v) for v in band.split("-"))
            tp, fp, tn, fn = _counts(is_cr & m, is_xray & m, rej)
            r = _rates(tp, fp, tn, fn)
            impr = for_relative_improvement(r["FOR"], ref_for[band]) if ref_for else np.nan
            rows.append(dict(METHOD=method, BAND=band, E_LO=lo, E_HI=hi,
                             N_XRAY=int(np.count_nonzero(is_xray & m)),
                             N_CR=int(np.count_nonzero(is_cr & m)),
                             N_NOISE=int(np.count_nonzero(is_noise & m)),
                             TP=tp, FP=fp, TN=tn, FN=fn,
                             **{k: float(v) for k, v in r.items()}, FOR_IMPR=float(impr)))
    names = ["METHOD", "BAND", "E_LO", "E_HI", "N_XRAY", "N_CR", "N_NOISE", "TP", "FP", "TN",
             "FN", "F1", "PRECISION", "RECALL", "FPR", "FOR", "FOR_IMPR"]
    table = Table(rows=[[r[n] for n in names] for r in rows], names=names)
    table["E_LO"].unit = table["E_HI"].unit = u.keV
    for name, desc in (("F1", "F1 score of the CR class"), ("PRECISION", "CR precision"),
                       ("RECALL", "CR recall (completeness)"),
                       ("FPR", "lost X-ray signal FP/(TN+FP)"),
                       ("FOR", "unrejected CR background FN/(TN+FN)"),
                       ("FOR_IMPR", f"1 - FOR/FOR({reference})")):
        table[name].description = desc
    table.meta["REFMETH"] = reference
    table.meta["comments"] = ["xcrfilter compare: seed paper Table 2 layout; fractions, "
                              "CR positive; bands half-open [E_LO, E_HI) keV"]
    return table


def format_table(table, band=None):
    """Printable Table 2 (values x 100) for one band or all bands."""
    lines = []
    bands = [band] if band else list(dict.fromkeys(table["BAND"]))
    for b in bands:
        t = table[table["BAND"] == b]
        lines.append(f"Band {b} keV  (X-ray events {t['N_XRAY'][0]}, CR events {t['N_CR'][0]}"
                     f", noise {t['N_NOISE'][0]})")
        lines.append(f"{'method':<13}{'F1':>8}{'prec':>8}{'recall':>8}{'lost X':>8}"
                     f"{'FOR':>8}{'FOR imp':>9}")
        for row in t:
            keys = ("F1", "PRECISION", "RECALL", "FPR", "FOR", "FOR_IMPR")
            vals = [row[k] * 100 for k in keys]
            lines.append(f"{row['METHOD']:<13}" + "".join(
                f"{v:8.2f}" if np.isfinite(v) else f"{'--':>8}" for v in vals[:5])
                + (f"{vals[5]:9.2f}" if np.isfinite(vals[5]) else f"{'--':>9}"))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# ROC sweeps
# --------------------------------------------------------------------------
def roc_sweeps(events, truth, *, radii=None, thresholds=None, band=FULL_BAND):
    """ROC curves (recall vs lost X-ray signal) of the swept methods.

    Every registered filter with a ``CALIBRATION`` declaration (score column,
    option, sign) whose column is in ``events`` is swept: SAC in radius
    using ``SAC_DIST`` (reject when ``SAC_DIST <= R``), the probability
    filters (CAM: ``PROB_CR``, MORPH: ``PROB_MORPH``) in threshold (reject
    when the probability is ``>= t``); each alone and in union with VF.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``CURVE`` (e.g. ``"SAC"``, ``"VF+CAM"``), ``PARAM`` (radius in
        pixels or threshold), ``FPR``, ``RECALL``, ``FOR``.
    """
    _require_columns(events, ("ENERGY", "STATUS"), "roc_sweeps")
    e = energy_values(events["ENERGY"], u.keV)
    inband = (e >= band[0]) & (e < band[1])
    truth = np.asarray(truth)
    is_cr, is_xray = (truth == 2) & inband, (truth == 1) & inband
    vf = rejected(events, "VF")
    if radii is None:
        radii = np.concatenate([[-1.0, 0.0], np.unique(np.round(np.geomspace(1, 400, 40)))])
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 101)
    rows = []
    for label, name in registry.report_names().items():
        calibration = registry.filter_spec(name).calibration
        if calibration is None or calibration.column not in events.colnames:
            continue
        column, sign = calibration.column, calibration.sign
        score = np.asarray(events[column], float)
        for p in (radii if sign < 0 else thresholds):
            rej = score <= p if sign < 0 else score >= p
            for curve, r in ((label, rej), (f"VF+{label}", rej | vf)):
                tp, fp, tn, fn = _counts(is_cr, is_xray, r)
                rates = _rates(tp, fp, tn, fn)
                rows.append((curve, float(p), float(rates["FPR"]), float(rates["RECALL"]),
                             float(rates["FOR"])))
    return Table(rows=rows or None, names=("CURVE", "PARAM", "FPR", "RECALL", "FOR"),
                 dtype=(str, float, float, float, float))
