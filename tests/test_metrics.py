"""Tests of xcrfilter.evaluation.metrics against hand-made confusion matrices and the
seed paper's Table 2 arithmetic (Sec. 3.4, Eqs. 2-8)."""
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, Table

from xcrfilter.evaluation import metrics as m
from xcrfilter.evaluation import roc
from xcrfilter.evaluation import selection as sel

# Confusion matrices consistent with the seed paper's Table 2: 10 000 CR and
# 711 099 X-ray events in 0.3-10 keV (CR ~1.4 % of the events).
AI = m.Confusion(tp=4367, fp=12942, tn=698157, fn=5633)
TRAD = m.Confusion(tp=260, fp=7595, tn=703504, fn=9740)


def _arrays(cm):
    """truth (bool, True = CR) and rejected arrays realising ``cm``."""
    truth = np.r_[np.ones(cm.tp + cm.fn, bool), np.zeros(cm.fp + cm.tn, bool)]
    rejected = np.r_[np.ones(cm.tp, bool), np.zeros(cm.fn, bool),
                     np.ones(cm.fp, bool), np.zeros(cm.tn, bool)]
    return truth, rejected


def test_confusion_counts():
    truth = np.array([True, True, True, False, False, False, False])
    rej = np.array([True, False, False, True, False, False, False])
    assert m.confusion(truth, rej) == m.Confusion(tp=1, fp=1, tn=3, fn=2)


def test_confusion_from_labels_ignores_noise():
    labels = np.array([2, 2, 1, 1, 0, 0], dtype=np.uint8)
    rej = np.array([True, False, True, False, True, False])
    assert m.confusion(labels, rej) == m.Confusion(tp=1, fp=1, tn=1, fn=1)


def test_small_matrix_by_hand():
    cm = m.Confusion(tp=3, fp=1, tn=90, fn=6)
    assert m.precision(cm) == pytest.approx(0.75)
    assert m.recall(cm) == pytest.approx(3 / 9)
    assert m.f1_score(cm) == pytest.approx(2 * 0.75 * (1 / 3) / (0.75 + 1 / 3))
    assert m.f1_score(cm) == pytest.approx(6 / 13)  # 2TP / (2TP + FP + FN)
    assert m.lost_xray_signal(cm) == pytest.approx(1 / 91)
    assert m.unrejected_cr_background(cm) == pytest.approx(6 / 96)
    assert m.accuracy(cm) == pytest.approx(93 / 100)


@pytest.mark.parametrize("cm, published", [
    # Table 2, AI filtering and traditional filtering (all x100)
    (AI, dict(precision=25.23, recall=43.67, f1_score=31.98, lost_xray_signal=1.82,
              unrejected_cr_background=0.80)),
    (TRAD, dict(precision=3.31, recall=2.60, f1_score=2.91, lost_xray_signal=1.07,
                unrejected_cr_background=1.37)),
], ids=["ai", "traditional"])
def test_paper_table2_column(cm, published):
    for name, value in published.items():
        assert 100 * getattr(m, name)(cm) == pytest.approx(value, abs=0.005), name


def test_paper_table2_for_improvement():
    # AI over traditional: 41.37 %
    assert 100 * m.for_relative_improvement(AI, TRAD) == pytest.approx(41.37, abs=0.1)


def test_f1_is_eq5_of_precision_and_recall():
    # Eq. 5, checked on the package's own precision and recall of both columns
    for cm, published in ((AI, 31.98), (TRAD, 2.91)):
        p, r = m.precision(cm), m.recall(cm)
        assert m.f1_score(cm) == pytest.approx(2 * p * r / (p + r), rel=1e-12)
        assert 100 * m.f1_score(cm) == pytest.approx(published, abs=0.01)
    assert m.f1_score((0, 5, 10, 5)) == 0.0  # P + R = 0
    assert np.isnan(m.f1_score((0, 0, 10, 0)))  # nothing rejected, no CR: P and R undefined


def test_for_relative_improvement_from_published_for():
    # Eq. 8 with the rounded published FORs: 1 - 0.80/1.37 = 41.6 %
    assert m.for_relative_improvement(0.0080, 0.0137) == pytest.approx(0.41606, abs=1e-4)
    assert m.for_relative_improvement(0.02, 0.01) == pytest.approx(-1.0)


def test_zero_denominators_are_nan():
    nothing_rejected = m.Confusion(tp=0, fp=0, tn=10, fn=5)
    assert math.isnan(m.precision(nothing_rejected))
    assert math.isnan(m.f1_score(nothing_rejected))
    assert m.recall(nothing_rejected) == 0
    all_rejected = m.Confusion(tp=5, fp=10, tn=0, fn=0)
    assert math.isnan(m.unrejected_cr_background(all_rejected))
    no_cr = m.Confusion(tp=0, fp=1, tn=9, fn=0)
    assert math.isnan(m.recall(no_cr))
    assert m.lost_xray_signal(no_cr) == pytest.approx(0.1)
    no_xray = m.Confusion(tp=2, fp=0, tn=0, fn=1)
    assert math.isnan(m.lost_xray_signal(no_xray))
    assert math.isnan(m.accuracy(m.Confusion(0, 0, 0, 0)))
    assert math.isnan(m.for_relative_improvement(0.01, 0.0))
    assert m.f1_score(m.Confusion(tp=0, fp=3, tn=5, fn=2)) == 0.0


def test_summary_keys():
    s = m.summary(AI, TRAD)
    assert s["n_cr"] == 10000 and s["n_xray"] == 711099
    assert s["for_improvement"] == pytest.approx(
        1 - (5633 / 703790) / (9740 / 713244))
    assert math.isnan(m.summary(AI)["for_improvement"])


def test_event_metrics_band_edges():
    t = QTable()
    # energies at the band edges: 300 eV is in, 10 keV is out, 299.9 eV out
    t["ENERGY"] = np.array([299.9, 300.0, 5000.0, 9999.0, 10000.0, 2000.0],
                           dtype=np.float32) * u.eV
    truth = np.array([2, 2, 1, 1, 2, 0])
    rejected = np.array([True, True, False, True, True, True])
    res = m.event_metrics(t, truth, rejected)
    assert res["n_events"] == 3
    assert (res["tp"], res["fp"], res["tn"], res["fn"]) == (1, 1, 1, 0)
    assert res["fpr"] == pytest.approx(0.5)
    assert res["band"].unit == u.keV
    res = m.event_metrics(t, truth, rejected, band=[0.2, 20] * u.keV,
                          reference=np.zeros(6, bool))
    assert (res["tp"], res["fn"]) == (3, 0)
    assert res["for_improvement"] == pytest.approx(1.0)


def test_event_metrics_keV_table_column():
    t = Table()
    t["ENERGY"] = Table.Column([0.5, 1.0], unit="keV")
    res = m.event_metrics(t, np.array([True, False]), np.array([True, False]))
    assert res["n_events"] == 2 and res["precision"] == 1.0


def test_rejected_by_bits():
    t = QTable({"STATUS": np.array([0, 1, 2, 4, 32, 3], dtype=np.int32)})
    np.testing.assert_array_equal(sel.rejected_by(t), [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(sel.rejected_by(t, bits=[0, 1]), [0, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(sel.rejected_by(t, bits="CAM"), [0, 0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="bits"):
        sel.rejected_by(t, bits="NOPE")


def test_roc_curve_hand_made():
    truth = np.array([True, True, False, True, False, False])
    score = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.1])
    fpr, rec, thr = roc.roc_curve(truth, score)
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.4, 0.3, 0.1])
    np.testing.assert_allclose(rec, [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    # each point agrees with the confusion matrix at that threshold
    for f, r, t in zip(fpr[1:], rec[1:], thr[1:]):
        cm = m.confusion(truth, score >= t)
        assert m.lost_xray_signal(cm) == pytest.approx(f)
        assert m.recall(cm) == pytest.approx(r)


def test_against_scikit_learn():
    # scikit-learn as the oracle of the paper's definitions (CR = positive class)
    from sklearn import metrics as sk
    rng = np.random.default_rng(5)
    truth = rng.random(2000) < 0.2
    score = np.round(rng.random(2000) + 0.3 * truth, 2)    # ties on purpose
    rej = score >= 0.8
    cm = m.confusion(truth, rej)
    (tn, fp), (fn, tp) = sk.confusion_matrix(truth, rej, labels=[False, True])
    assert cm == m.Confusion(tp=tp, fp=fp, tn=tn, fn=fn)
    assert m.precision(cm) == pytest.approx(sk.precision_score(truth, rej))
    assert m.recall(cm) == pytest.approx(sk.recall_score(truth, rej))
    assert m.f1_score(cm) == pytest.approx(sk.f1_score(truth, rej))
    assert m.accuracy(cm) == pytest.approx(sk.accuracy_score(truth, rej))
    assert m.lost_xray_signal(cm) == pytest.approx(1 - sk.recall_score(~truth, ~rej))
    assert m.unrejected_cr_background(cm) == pytest.approx(1 - sk.precision_score(~truth, ~rej))
    fpr, rec, thr = roc.roc_curve(truth, score)
    assert len(thr) == len(np.unique(score)) + 1 and np.all(np.diff(thr) < 0)
    for i in (1, len(thr) // 2, len(thr) - 1):   # each point is the confusion at its threshold
        cm = m.confusion(truth, score >= thr[i])
        assert (fpr[i], rec[i]) == (m.lost_xray_signal(cm), m.recall(cm))
    assert np.trapezoid(rec, fpr) == pytest.approx(sk.roc_auc_score(truth, score))


def test_roc_curve_one_class_or_none():
    fpr, rec, thr = roc.roc_curve(np.array([True, True]), np.array([0.2, 0.7]))
    assert np.isnan(fpr).all() and rec.tolist() == [0, 0.5, 1] and thr[0] == np.inf
    fpr, rec, thr = roc.roc_curve(np.array([1, 1, 0]), np.array([0.2, 0.7, 0.1]))
    assert np.isnan(rec).all() and fpr.tolist() == [0, 0.5, 1]
    fpr, rec, thr = roc.roc_curve(np.array([0, 0]), np.array([0.2, 0.7]))
    assert np.isnan(fpr).all() and np.isnan(rec).all() and thr.tolist() == [np.inf]


def test_threshold_at_fpr():
    truth = np.array([True, True, False, True, False, False])
    score = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.1])
    choice = roc.threshold_at_fpr(truth, score, 0.0)
    assert choice == roc.ThresholdChoice(0.9, 0.0, pytest.approx(1 / 3))
    choice = roc.threshold_at_fpr(truth, score, 0.5)
    assert choice.threshold == 0.4 and choice.recall == 1.0
    assert roc.threshold_at_fpr(truth, score, 50 * u.percent).threshold == 0.4
    with pytest.raises(ValueError, match="target_fpr"):
        roc.threshold_at_fpr(truth, score, 1.5)


def test_table2_layout_reproduces_paper():
    truth, rej_ai = _arrays(AI)
    # traditional rejections realised on the same events
    n_cr, n_x = 10000, 711099
    rej_trad = np.r_[np.arange(n_cr) < TRAD.tp, np.arange(n_x) < TRAD.fp]
    tab = m.table2(truth, {"AI Filtering": rej_ai, "Traditional Filtering": rej_trad})
    assert tab.colnames == ["metric", "AI Filtering", "Traditional Filtering"]
    assert list(tab["metric"]) == [r for r, _ in m.TABLE2_ROWS]
    ai = tab["AI Filtering"].to_value(u.percent)
    np.testing.assert_allclose(ai[:5], [31.98, 25.23, 43.67, 1.82, 0.80], atol=0.005)
    assert ai[5] == pytest.approx(41.4, abs=0.1)
    trad = tab["Traditional Filtering"].to_value(u.percent)
    np.testing.assert_allclose(trad[:5], [2.91, 3.31, 2.60, 1.07, 1.37], atol=0.005)
    assert math.isnan(trad[5])
    assert tab.meta["AI Filtering"] == AI._asdict()


def test_table2_with_band():
    t = QTable({"ENERGY": np.array([100.0, 500, 600, 20000]) * u.eV})
    truth = np.array([True, True, False, False])
    tab = m.table2(truth, {"a": np.array([True, True, False, True])}, events=t)
    assert tab.meta["a"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 0}
    assert tab["a"][1] == 100 * u.percent


# ---------------------------------------------------------------- bad input

def test_confusion_shape_mismatch():
    with pytest.raises(ValueError, match="rejected has shape"):
        m.confusion(np.array([True, False]), np.array([True]))


def test_confusion_rejected_not_bool():
    with pytest.raises(TypeError, match="rejected must be a bool array"):
        m.confusion(np.array([True, False]), np.array([1, 0]))


def test_confusion_bad_labels():
    with pytest.raises(ValueError, match="truth_is_cr.*0 \\(noise\\), 1 \\(X-ray\\), 2 \\(CR\\)"):
        m.confusion(np.array([1, 3]), np.array([True, False]))
    with pytest.raises(TypeError, match="truth_is_cr"):
        m.confusion(np.array([0.5, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="truth_is_cr must be 1-D"):
        m.confusion(np.ones((2, 2), bool), np.ones((2, 2), bool))


def test_band_errors():
    t = QTable({"ENERGY": np.array([500.0]) * u.eV})
    with pytest.raises(TypeError, match="band must be a Quantity"):
        m.event_metrics(t, np.array([True]), np.array([True]), band=(0.3, 10))
    with pytest.raises(ValueError, match="band must be \\(low, high\\)"):
        m.event_metrics(t, np.array([True]), np.array([True]), band=(10, 0.3) * u.keV)
    with pytest.raises(u.UnitConversionError, match="band must be in energy"):
        m.event_metrics(t, np.array([True]), np.array([True]), band=(1, 2) * u.m)


def test_event_metrics_missing_units_or_column():
    with pytest.raises(TypeError, match="ENERGY.*no unit"):
        m.event_metrics(Table({"ENERGY": [500.0]}), np.array([True]), np.array([True]))
    with pytest.raises(ValueError, match="events has no ENERGY"):
        m.event_metrics(Table({"E": [500.0]}), np.array([True]), np.array([True]))
    with pytest.raises(ValueError, match="truth has 2 values but events has 1"):
        m.event_metrics(QTable({"ENERGY": [500.0] * u.eV}), np.array([True, False]),
                        np.array([True]))


def test_roc_errors():
    with pytest.raises(ValueError, match="score contains NaN"):
        roc.roc_curve(np.array([True, False]), np.array([np.nan, 0.1]))
    with pytest.raises(ValueError, match="score has shape"):
        roc.roc_curve(np.array([True, False]), np.array([0.1]))


def test_table2_errors():
    with pytest.raises(TypeError, match="rejections must be a non-empty dict"):
        m.table2(np.array([True]), {})
    with pytest.raises(ValueError, match="reference 'x' is not a key"):
        m.table2(np.array([True]), {"a": np.array([True])}, reference="x")
