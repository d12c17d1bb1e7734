"""Bootstrap intervals over test samples (by index, whole groups, or vectorised counts), the paired difference of
two models on hand-made predictions, and resampled_pairs counting a pair drawn twice twice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from streamguard.eval.metrics import (
    bootstrap_ci,
    compute_metrics,
    pair_metrics,
    paired_bootstrap,
    resampled_pairs,
    weighted_average_precision,
    weighted_f1,
    weighted_precision,
    weighted_recall,
    weighted_roc_auc,
)


def test_interval_of_a_mean_covers_it_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 40), rng.normal(1.0, 1.0, 4000)
    a = bootstrap_ci(lambda idx: small[idx].mean(), len(small), n_boot=500)
    b = bootstrap_ci(lambda idx: large[idx].mean(), len(large), n_boot=500)
    assert a["low"] < a["value"] == small.mean() < a["high"] and a["n_valid"] == 500
    assert b["high"] - b["low"] < (a["high"] - a["low"]) / 5  # ~ 1/sqrt(100)
    assert abs((b["high"] - b["low"]) / 2 - 1.96 / np.sqrt(4000)) < 0.01
    assert bootstrap_ci(lambda idx: small[idx].mean(), len(small), n_boot=500) == a  # seeded


def test_groups_are_resampled_whole():
    groups = ["p0", "p0", "p1", "p1", "p2", "p2", None, None]
    seen = []

    def stat(idx):
        seen.append(idx.copy())
        return float(len(idx))

    bootstrap_ci(stat, 8, groups=groups, n_boot=50)
    for idx in seen[:-1]:
        for a, b in ((0, 1), (2, 3), (4, 5)):
            assert (idx == a).sum() == (idx == b).sum()  # both sides of a pair, always together


def test_undefined_resamples_are_left_out_and_pair_metrics_work_inside():
    y = np.array([1, 0, 1, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.8, 0.7, 0.3, 0.1])
    pids = ["a", "a", "b", "b", "c", "c"]
    preds = (prob >= 0.5).astype(int)
    auc = bootstrap_ci(lambda idx: compute_metrics(y[idx], prob[idx])["roc_auc"], 6, n_boot=200)
    assert auc["n_valid"] < 200 and auc["low"] <= auc["value"] <= auc["high"]  # one-class resamples: NaN, left out
    pc = bootstrap_ci(lambda idx: pair_metrics(resampled_pairs(idx, y, preds, pids))["pair_correct"], 6,
                      groups=pids, n_boot=200)
    assert pc["value"] == 1 / 3 and 0.0 <= pc["low"] <= pc["high"] <= 1.0 and pc["n_valid"] == 200


def test_resampled_pairs_counts_a_pair_drawn_twice_twice():
    y, preds, pids = [1, 0, 1, 0], [1, 0, 1, 1], ["a", "a", "b", "b"]
    assert sorted(resampled_pairs(np.array([0, 1, 2, 3]), y, preds, pids)) == [(1, 0), (1, 1)]
    assert sorted(resampled_pairs(np.array([0, 1, 0, 1]), y, preds, pids)) == [(1, 0), (1, 0)]
    assert resampled_pairs(np.array([0, 2]), y, preds, pids) == []  # no complete pair


# 20 hand-made test samples: 10 vulnerable, 10 safe. Model A is right on all of them at 0.5; model B is model A
# with samples 0 and 1 (vulnerable) pushed below 0.5 and sample 10 (safe) above: B misses 2 and raises 1 alarm.
Y = np.array([1] * 10 + [0] * 10)
A = np.array([0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6, 0.6, 0.55, 0.95,
              0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.45, 0.05, 0.1, 0.3])
B = A.copy()
B[[0, 1]] = [0.3, 0.2]
B[10] = 0.8


def test_weighted_metrics_equal_sklearn_on_the_resampled_arrays():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 61)
    p = np.round(rng.random(61), 1)  # rounded: many tied scores
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        counts = np.bincount(idx, minlength=len(y))[None, :]
        assert weighted_f1(y, p >= 0.5, counts)[0] == pytest.approx(skm.f1_score(y[idx], p[idx] >= 0.5))
        assert weighted_average_precision(y, p, counts)[0] == pytest.approx(
            skm.average_precision_score(y[idx], p[idx]))
        assert weighted_roc_auc(y, p, counts)[0] == pytest.approx(skm.roc_auc_score(y[idx], p[idx]))
        assert weighted_precision(y, p >= 0.5, counts)[0] == pytest.approx(
            skm.precision_score(y[idx], p[idx] >= 0.5, zero_division=0))
        assert weighted_recall(y, p >= 0.5, counts)[0] == pytest.approx(
            skm.recall_score(y[idx], p[idx] >= 0.5, zero_division=0))
    ones = np.ones((1, len(y)))
    assert weighted_average_precision(y, p, ones)[0] == pytest.approx(compute_metrics(y, p)["pr_auc"])
    assert np.isnan(weighted_average_precision(y, p, (1 - y)[None, :])[0])  # no positive drawn: undefined
    assert weighted_roc_auc(y, p, ones)[0] == pytest.approx(compute_metrics(y, p)["roc_auc"])
    assert np.isnan(weighted_roc_auc(y, p, y[None, :])[0])  # no negative drawn: undefined
    assert weighted_precision(y, np.zeros(len(y), bool), ones)[0] == 0.0  # nothing predicted: 0, as zero_division=0


def test_hand_made_values_and_paired_difference():
    res = paired_bootstrap(Y, A, 0.5, B, 0.5, n_boot=2000, seed=1)
    f1 = res["f1"]
    # by hand: A: tp 10, fp 0, fn 0 -> F1 1; B: tp 8, fp 1, fn 2 -> 16 / 19
    assert f1["a"]["value"] == 1.0
    assert f1["b"]["value"] == pytest.approx(16 / 19)
    assert f1["diff"]["value"] == pytest.approx(1 - 16 / 19)
    assert res["pr_auc"]["a"]["value"] == 1.0  # A ranks every vulnerable sample above every safe one
    assert res["pr_auc"]["diff"]["value"] == pytest.approx(1 - skm.average_precision_score(Y, B))
    # paired: A is never worse than B on any resample (B only adds errors), so the interval is >= 0
    assert 0.0 <= f1["diff"]["low"] <= f1["diff"]["value"] <= f1["diff"]["high"] <= 1.0
    assert f1["a"]["low"] == f1["a"]["high"] == 1.0
    assert f1["b"]["low"] < f1["b"]["value"] < f1["b"]["high"]


def test_pairing_sees_a_difference_that_the_two_separate_intervals_do_not():
    # 300 samples, a mediocre model A; B is A with 8 more mistakes. Separately their intervals overlap widely;
    # on the same resamples B is never better, and the paired interval lies above 0.
    rng = np.random.default_rng(11)
    y = np.arange(300) % 2
    a = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, 300), 0, 1)
    b = a.copy()
    right = np.flatnonzero((a >= 0.5) == (y == 1))[:8]
    b[right] = 1 - b[right]
    res = paired_bootstrap(y, a, 0.5, b, 0.5, n_boot=1000, seed=2)["f1"]
    assert res["a"]["low"] < res["b"]["high"]  # the separate intervals overlap
    assert res["diff"]["low"] > 0  # the paired difference does not include 0


def test_the_same_model_twice_differs_by_exactly_zero_on_every_resample():
    res = paired_bootstrap(Y, B, 0.5, B.copy(), 0.5, n_boot=300, seed=5)
    for m in ("f1", "pr_auc"):
        assert res[m]["diff"]["value"] == res[m]["diff"]["low"] == res[m]["diff"]["high"] == 0.0


def test_seeded_and_level():
    stat = lambda c: weighted_f1(Y, B >= 0.5, c)  # noqa: E731
    a = bootstrap_ci(stat, len(Y), counts=True, n_boot=500, seed=7)
    assert a == bootstrap_ci(stat, len(Y), counts=True, n_boot=500, seed=7)
    assert a != bootstrap_ci(stat, len(Y), counts=True, n_boot=500, seed=8)
    narrow = bootstrap_ci(stat, len(Y), counts=True, n_boot=500, seed=7, level=0.5)
    assert a["low"] <= narrow["low"] <= narrow["high"] <= a["high"]
    assert a["value"] == pytest.approx(compute_metrics(Y, B, 0.5)["f1"])
    # a batch size that does not divide n_boot still draws n_boot resamples
    seen = []
    bootstrap_ci(lambda c: seen.append(len(c)) or np.zeros(len(c)), len(Y), counts=True, n_boot=450, seed=0)
    assert sum(seen[:-1]) == 450 and seen[-1] == 1  # the last call scores the sample itself


def test_more_test_samples_give_a_narrower_interval():
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        y = np.arange(n) % 2
        p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)
        ci = bootstrap_ci(lambda c: weighted_f1(y, p >= 0.5, c), n, counts=True, n_boot=500, seed=0)
        return ci["high"] - ci["low"]

    assert width(600) < width(200) * 0.75  # ~ 1/sqrt(3)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        paired_bootstrap(Y, A, 0.5, B, 0.5, metrics=("acc",))


def test_counts_and_indices_are_the_same_resamples():
    # one resampler: the count matrix of a resample is the bincount of its indices, so a statistic computed
    # either way gives the same interval for the same seed
    pred = B >= 0.5
    by_counts = bootstrap_ci(lambda c: weighted_f1(Y, pred, c), len(Y), counts=True, n_boot=300, seed=3)
    by_index = bootstrap_ci(lambda idx: skm.f1_score(Y[idx], pred[idx], zero_division=0), len(Y), n_boot=300, seed=3)
    for k in ("value", "low", "high"):
        assert by_counts[k] == pytest.approx(by_index[k])
