"""Metrics computed from predictions (labels and vulnerable-class probabilities).

Every number StreamGuard reports comes from here, from real predictions:
precision/recall/F1 of the vulnerable class at a threshold tuned on the
validation split, accuracy, ROC-AUC, PR-AUC, calibration (ECE, Brier), TPR at
fixed FPR, VD-S (FNR at FPR <= 0.5%, PrimeVul) and the pair metrics P-C/P-V/P-B/P-R.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from sklearn import metrics as skm


def _arrays(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape}) and probabilities ({p.shape}) differ in length")
    return y, p


def tune_threshold(y_true, prob) -> float:
    """Threshold on P(vulnerable) that maximises F1 on these (validation) predictions.

    Candidates are the midpoints between consecutive distinct probabilities; ties
    go to the threshold nearest 0.5. A split with one class gets 0.5.
    """
    y, p = _arrays(y_true, prob)
    if len(np.unique(y)) < 2:
        return 0.5
    prec, rec, thr = skm.precision_recall_curve(y, p)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
    best = f1.max()
    cands = thr[np.isclose(f1, best)]
    # precision_recall_curve's thresholds are "predict 1 when p >= thr"; move to the
    # midpoint below thr so the rule "p >= threshold" generalises instead of sitting on a sample.
    uniq = np.unique(p)
    mids = []
    for t in cands:
        below = uniq[uniq < t]
        mids.append((t + below.max()) / 2 if below.size else t)
    mids = np.asarray(mids)
    return float(mids[np.argmin(np.abs(mids - 0.5))])


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    y, p = _arrays(y_true, prob)
    bins = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, bins[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)


def tpr_at_fpr(y_true, prob, max_fpr: float) -> float:
    """Best TPR reachable with FPR <= max_fpr (ROC operating point)."""
    y, p = _arrays(y_true, prob)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, p)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def compute_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """All point metrics at ``threshold`` (predict vulnerable when prob >= threshold)."""
    y, p = _arrays(y_true, prob)
    pred = (p >= threshold).astype(np.int64)
    two = len(np.unique(y)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    out = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if two else float("nan"),
        "brier": float(skm.brier_score_loss(y, p, pos_label=1)) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p),
        "tpr_at_fpr_0.5pct": tpr_at_fpr(y, p, 0.005),
        "tpr_at_fpr_1pct": tpr_at_fpr(y, p, 0.01),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }
    vds = out["tpr_at_fpr_0.5pct"]
    out["vd_s"] = float("nan") if math.isnan(vds) else 1.0 - vds
    return out


def pair_metrics(pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """PrimeVul pair metrics from (prediction on vulnerable, prediction on fixed) pairs.

    P-C both right (1, 0); P-V both vulnerable (1, 1); P-B both benign (0, 0);
    P-R both reversed (0, 1). Shares of all pairs.
    """
    n = len(pairs)
    if n == 0:
        return {"pairs": 0}
    c = {"pair_correct": 0, "pair_vulnerable": 0, "pair_benign": 0, "pair_reversed": 0}
    for pv, pf in pairs:
        key = {(1, 0): "pair_correct", (1, 1): "pair_vulnerable", (0, 0): "pair_benign",
               (0, 1): "pair_reversed"}[(int(pv), int(pf))]
        c[key] += 1
    return {"pairs": n, **{k: v / n for k, v in c.items()}}


def pairs_from_predictions(labels, preds, pair_ids: Sequence) -> list[tuple[int, int]]:
    """(prediction on the vulnerable version, prediction on the fixed version) for each complete pair."""
    by_pair: dict[str, dict[int, int]] = {}
    for y, pred, pid in zip(labels, preds, pair_ids):
        if pid is not None:
            by_pair.setdefault(str(pid), {})[int(y)] = int(pred)
    return [(v[1], v[0]) for v in by_pair.values() if 0 in v and 1 in v]


def all_metrics(y_true, prob, threshold: float, pair_ids: Sequence | None = None) -> dict[str, float]:
    """:func:`compute_metrics` at ``threshold``, plus :func:`pair_metrics` when ``pair_ids`` (None where a
    sample has no pair) make at least one complete vulnerable/fixed pair."""
    y, p = _arrays(y_true, prob)
    out = compute_metrics(y, p, threshold)
    if pair_ids is not None:
        pairs = pairs_from_predictions(y, (p >= threshold).astype(np.int64), pair_ids)
        if pairs:
            out.update(pair_metrics(pairs))
    return out


def curves(y_true, prob, max_points: int = 200) -> dict[str, list[float]]:
    """ROC and PR curves (downsampled) for reports and KFP ClassificationMetrics."""
    y, p = _arrays(y_true, prob)
    if len(np.unique(y)) < 2:
        return {"fpr": [], "tpr": [], "roc_thresholds": [], "precision": [], "recall": []}
    fpr, tpr, thr = skm.roc_curve(y, p)
    prec, rec, _ = skm.precision_recall_curve(y, p)

    def pick(n: int) -> np.ndarray:
        return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))

    r, q = pick(len(fpr)), pick(len(prec))
    thr = np.where(np.isfinite(thr), thr, 1.0)
    return {
        "fpr": fpr[r].tolist(), "tpr": tpr[r].tolist(), "roc_thresholds": thr[r].tolist(),
        "precision": prec[q].tolist(), "recall": rec[q].tolist(),
    }


# ---------------------------------------------------------------- bootstrap intervals over test samples
#
# A bootstrap resample of n samples is a vector of counts (how often each sample is drawn, multinomial with n
# draws); a metric of the resample is the metric of the full sample weighted by those counts. The weighted
# metrics below score many resamples at once ([k, n] counts -> [k] values) and equal scikit-learn's on the
# resampled arrays (tests/unit/eval/test_bootstrap.py). Other statistics (pair metrics, the real-pairs benchmark)
# take the resample as indices. One resampler (:func:`bootstrap_ci`) serves both, with whole groups (pairs)
# resampled together when asked. Resampling and percentiles are a few lines of NumPy (scipy.stats.bootstrap
# would do them, but has no cluster resampling and scipy is only an indirect dependency here).

BOOTSTRAP_BATCH = 200
"""Resamples scored per batch (bounds the [batch, n] count matrix for large test sets)."""


def _weighted_confusion(y_true, pred, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(pred, dtype=bool)
    w = np.atleast_2d(counts).astype(np.float64)
    return w @ (y & p), w @ (~y & p), w @ (y & ~p)


def weighted_f1(y_true, pred, counts: np.ndarray) -> np.ndarray:
    """F1 of the vulnerable class for each row of ``counts`` ``[k, n]`` (sample weights); 0 where undefined."""
    tp, fp, fn = _weighted_confusion(y_true, pred, counts)
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def weighted_precision(y_true, pred, counts: np.ndarray) -> np.ndarray:
    """Precision of the vulnerable class for each row of ``counts`` ``[k, n]``; 0 where undefined."""
    tp, fp, _ = _weighted_confusion(y_true, pred, counts)
    return np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)


def weighted_recall(y_true, pred, counts: np.ndarray) -> np.ndarray:
    """Recall of the vulnerable class for each row of ``counts`` ``[k, n]``; 0 where undefined."""
    tp, _, fn = _weighted_confusion(y_true, pred, counts)
    return np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)


def weighted_roc_auc(y_true, prob, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC as ``sklearn.metrics.roc_auc_score`` (the share of (positive, negative) pairs ranked right, a tie
    counting one half) for each row of ``counts`` ``[k, n]``; NaN for a row without both classes."""
    y, p = _arrays(y_true, prob)
    order = np.argsort(p, kind="stable")
    y, p = y[order].astype(np.float64), p[order]
    w = np.atleast_2d(counts)[:, order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # last item of each group of tied scores
    pos_c, neg_c = np.cumsum(w * y, axis=1)[:, ends], np.cumsum(w * (1 - y), axis=1)[:, ends]
    zero = np.zeros_like(pos_c[:, :1])
    pos_g = np.diff(np.concatenate([zero, pos_c], axis=1), axis=1)
    neg_g = np.diff(np.concatenate([zero, neg_c], axis=1), axis=1)
    right = (pos_g * (neg_c - neg_g + 0.5 * neg_g)).sum(axis=1)  # negatives below each positive, ties one half
    pos, neg = pos_c[:, -1], neg_c[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (neg > 0), right / (pos * neg), np.nan)


def weighted_average_precision(y_true, prob, counts: np.ndarray) -> np.ndarray:
    """PR-AUC as ``sklearn.metrics.average_precision_score`` (sum over score thresholds of
    ``(R_k - R_{k-1}) * P_k``) for each row of ``counts`` ``[k, n]``; NaN for a row without positives."""
    y, p = _arrays(y_true, prob)
    order = np.argsort(-p, kind="stable")
    y, p = y[order].astype(np.float64), p[order]
    w = np.atleast_2d(counts)[:, order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # last item of each group of tied scores
    tp = np.cumsum(w * y, axis=1)[:, ends]
    fp = np.cumsum(w * (1 - y), axis=1)[:, ends]
    pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / pos
    gain = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], axis=1), axis=1)
    ap = (gain * precision).sum(axis=1)
    return np.where(pos[:, 0] > 0, ap, np.nan)


def bootstrap_ci(statistic: Callable[[np.ndarray], Any], n: int, *, groups: Sequence | None = None,
                 counts: bool = False, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` items.

    A resample draws ``n`` items with replacement; with ``groups`` (one key per item, e.g. ``pair_id``; None
    in it, or no ``groups``: the item is its own group) it draws whole groups, as many as there are (a cluster
    bootstrap: both sides of a pair stay together, so pair metrics can be computed on a resample).
    ``statistic`` sees each resample as an index array (an item may appear more than once), or, with
    ``counts=True``, a batch of resamples as a ``[k, n]`` matrix of how often each item was drawn and returns
    ``[k]`` values (the vectorised metrics above; a statistic of two models from the same counts is a *paired*
    bootstrap). The point estimate is the statistic of the items themselves. Resamples whose statistic is NaN
    (e.g. ROC-AUC of one class, no positive drawn) are left out; ``n_valid`` says how many counted. Seeded:
    the same call, the same interval. Returns ``value``, ``low``, ``high``, ``level``, ``n_boot``, ``n_valid``,
    ``seed``.
    """
    nan = float("nan")
    if n <= 0:
        return {"value": nan, "low": nan, "high": nan, "level": float(level), "n_boot": int(n_boot), "n_valid": 0,
                "seed": int(seed)}
    members: list[np.ndarray] | None = None
    if groups is not None:
        by: dict = {}
        for i, g in enumerate(groups):
            by.setdefault(("item", i) if g is None else ("group", g), []).append(i)
        members = [np.asarray(v) for v in by.values()]
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        if members is None:
            return rng.integers(0, n, n)
        return np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])

    values: list[float] = []
    for start in range(0, n_boot, BOOTSTRAP_BATCH):
        k = min(BOOTSTRAP_BATCH, n_boot - start)
        if counts:
            batch = np.stack([np.bincount(draw(), minlength=n) for _ in range(k)])
            values += np.asarray(statistic(batch), dtype=np.float64).tolist()
        else:
            values += [float(statistic(draw())) for _ in range(k)]
    boot = np.asarray(values, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    alpha = (1.0 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha]).tolist() if boot.size else (nan, nan)
    value = (float(np.asarray(statistic(np.ones((1, n))), dtype=np.float64)[0]) if counts
             else float(statistic(np.arange(n))))
    return {"value": value, "low": float(low), "high": float(high), "level": float(level), "n_boot": int(n_boot),
            "n_valid": int(boot.size), "seed": int(seed)}


def resampled_pairs(idx: np.ndarray, labels, preds, pair_ids) -> list[tuple[int, int]]:
    """(prediction on the vulnerable side, on the fixed side) of each complete pair among the items at ``idx``; a
    pair drawn k times by the bootstrap counts k times (for :func:`pair_metrics` inside a bootstrap statistic)."""
    seen: dict = {}
    out = []
    for i in idx:
        pid = pair_ids[i]
        if pid is None:
            continue
        seen.setdefault(pid, []).append(int(i))
    for items in seen.values():
        vul = [i for i in items if int(labels[i]) == 1]
        fix = [i for i in items if int(labels[i]) == 0]
        out += [(int(preds[v]), int(preds[f])) for v, f in zip(vul, fix)]
    return out


BOOTSTRAP_METRICS = ("f1", "pr_auc")
"""What :func:`paired_bootstrap` compares: F1 at each model's own threshold, and PR-AUC."""


WEIGHTED_METRICS = ("f1", "precision", "recall", "roc_auc", "pr_auc")
"""The metrics with a count-matrix form (:func:`weighted_metric`): a bootstrap scores a batch of resamples at once."""


def weighted_metric(metric: str, y, prob, threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(counts [k, n]) -> [k]``: ``metric`` (one of :data:`WEIGHTED_METRICS`; F1, precision and recall at
    ``threshold``) of the resamples that ``counts`` describes."""
    if metric in ("f1", "precision", "recall"):
        pred = np.asarray(prob) >= threshold
        f = {"f1": weighted_f1, "precision": weighted_precision, "recall": weighted_recall}[metric]
        return lambda c: f(y, pred, c)
    if metric in ("pr_auc", "roc_auc"):
        f = weighted_average_precision if metric == "pr_auc" else weighted_roc_auc
        return lambda c: f(y, prob, c)
    raise ValueError(f"bootstrap: unknown metric {metric!r} (expected one of {', '.join(WEIGHTED_METRICS)})")


def paired_bootstrap(y_true, prob_a, threshold_a: float, prob_b, threshold_b: float, *,
                     metrics: Sequence[str] = BOOTSTRAP_METRICS, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict[str, dict[str, float]]]:
    """Model A vs. model B on the same samples: per metric, ``a``, ``b`` and ``diff`` (A - B), each a
    :func:`bootstrap_ci` record; all three from the same resamples (the difference is paired)."""
    y, pa = _arrays(y_true, prob_a)
    _, pb = _arrays(y_true, prob_b)
    out = {}
    for m in metrics:
        fa, fb = weighted_metric(m, y, pa, threshold_a), weighted_metric(m, y, pb, threshold_b)
        kw = dict(counts=True, n_boot=n_boot, seed=seed, level=level)
        out[m] = {"a": bootstrap_ci(fa, len(y), **kw), "b": bootstrap_ci(fb, len(y), **kw),
                  "diff": bootstrap_ci(lambda c, fa=fa, fb=fb: fa(c) - fb(c), len(y), **kw)}
    return out
