"""The publish gate's bootstrap intervals in count form (every resample of a batch scored at once) equal the
same intervals computed resample by resample with scikit-learn (the gate's metric_fn), whole pairs resampled
together, for every card metric and for the paired challenger-minus-champion difference."""

from __future__ import annotations

import numpy as np
import pytest

from streamguard.gate import CARD_METRICS, _ci, counts_fn, metric_fn


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n = 120
    y = rng.integers(0, 2, n)
    a = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1).round(2)  # informative, with ties
    b = rng.random(n).round(2)  # noise
    groups = [f"pair{i // 2}" if i < 60 else f"#{i}" for i in range(n)]  # 30 pairs and 60 single functions
    return y, a, b, groups


@pytest.mark.parametrize("metric", CARD_METRICS)
def test_count_form_interval_equals_the_per_resample_one(data, metric):
    y, a, _, groups = data
    slow = metric_fn(metric, 0.5)
    by_index = _ci(lambda i: slow(y[i], a[i], None), len(y), groups, 100)
    by_counts = _ci(counts_fn(metric, 0.5, y, a), len(y), groups, 100, counts=True)
    for k in ("value", "low", "high"):
        assert by_counts[k] == pytest.approx(by_index[k], abs=1e-12), k
    assert by_counts["n_valid"] == by_index["n_valid"]
    assert by_counts["low"] < by_counts["high"]


@pytest.mark.parametrize("metric", ("f1", "pr_auc", "roc_auc"))
def test_paired_difference_in_count_form(data, metric):
    y, a, b, groups = data
    fa, fb = metric_fn(metric, 0.5), metric_fn(metric, 0.4)
    wa, wb = counts_fn(metric, 0.5, y, a), counts_fn(metric, 0.4, y, b)
    by_index = _ci(lambda i: fa(y[i], a[i], None) - fb(y[i], b[i], None), len(y), groups, 100)
    by_counts = _ci(lambda c: wa(c) - wb(c), len(y), groups, 100, counts=True)
    for k in ("value", "low", "high"):
        assert by_counts[k] == pytest.approx(by_index[k], abs=1e-12), k
    assert by_counts["low"] > 0  # the informative model is better than noise on every metric here


def test_an_auc_of_a_resample_with_one_class_is_undefined():
    y = np.array([1, 1, 0, 0])
    w = counts_fn("roc_auc", 0.5, y, np.array([0.9, 0.8, 0.2, 0.1]))
    v = w(np.array([[2, 2, 0, 0], [1, 1, 1, 1]]))
    assert np.isnan(v[0]) and v[1] == 1.0
    assert counts_fn("pair_correct", 0.5, y, y) is None  # no count form: the gate resamples by index
