import math

import numpy as np
import pytest
from sklearn import metrics as skm

from streamguard.eval.metrics import compute_metrics, curves, expected_calibration_error, pair_metrics, tune_threshold


@pytest.fixture
def preds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.35 * y + rng.normal(0.35, 0.2, 400), 0, 1)
    return y, p


def test_point_metrics_match_sklearn(preds):
    y, p = preds
    m = compute_metrics(y, p, threshold=0.5)
    pred = (p >= 0.5).astype(int)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == len(y)


def test_threshold_maximises_f1(preds):
    y, p = preds
    thr = tune_threshold(y, p)
    best = compute_metrics(y, p, thr)["f1"]
    for t in np.linspace(0.01, 0.99, 99):
        assert compute_metrics(y, p, t)["f1"] <= best + 1e-12


def test_vds_and_tpr_at_fpr_by_hand():
    # 200 negatives with scores 0..0.199; 10 positives at 0.5, 10 at 0.1995 (above all negatives but one? no: above all)
    neg = np.arange(200) / 1000.0
    pos = np.array([0.5] * 10 + [0.1985] * 10)
    y = np.r_[np.zeros(200), np.ones(20)].astype(int)
    p = np.r_[neg, pos]
    # FPR <= 0.5% allows 1 false positive of 200: threshold at 0.199 catches all 20 positives at 1 FP
    m = compute_metrics(y, p, 0.5)
    assert m["tpr_at_fpr_0.5pct"] == pytest.approx(1.0)
    assert m["vd_s"] == pytest.approx(0.0)
    # move 10 positives below 2 negatives: at FPR<=0.5% (1 FP) only the 10 at 0.5 are caught -> FNR 0.5
    p2 = np.r_[neg, [0.5] * 10 + [0.1975] * 10]
    m2 = compute_metrics(y, p2, 0.5)
    assert m2["tpr_at_fpr_0.5pct"] == pytest.approx(0.5)
    assert m2["vd_s"] == pytest.approx(0.5)


def test_pair_metrics_by_hand():
    pairs = [(1, 0), (1, 0), (1, 1), (0, 0), (0, 1)]
    m = pair_metrics(pairs)
    assert m == {"pairs": 5, "pair_correct": 0.4, "pair_vulnerable": 0.2, "pair_benign": 0.2, "pair_reversed": 0.2}


def test_ece_perfectly_calibrated_is_zero_and_overconfident_is_not():
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.where(y == 1, 0.0, 1.0)) == pytest.approx(1.0)


def test_single_class_and_curves(preds):
    m = compute_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert math.isnan(m["roc_auc"]) and m["recall"] == pytest.approx(2 / 3)
    c = curves(*preds)
    assert c["fpr"][0] == 0.0 and c["tpr"][-1] == 1.0 and len(c["fpr"]) <= 200
