"""bootstrap_ci: percentile intervals that cover the estimate, shrink with more data, resample whole groups
(pairs), skip undefined resamples, and repeat for a seed; resampled_pairs counts a pair drawn twice twice."""

from __future__ import annotations

import numpy as np

from streamguard.eval.metrics import bootstrap_ci, compute_metrics, pair_metrics, resampled_pairs


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
