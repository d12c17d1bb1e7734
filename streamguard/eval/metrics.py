"""Metrics computed from predictions (labels and vulnerable-class probabilities).

Every number StreamGuard reports comes from here, from real predictions:
precision/recall/F1 of the vulnerable class at a threshold tuned on the
validation split, accuracy, ROC-AUC, PR-AUC, calibration (ECE, Brier), TPR at
fixed FPR, VD-S (FNR at FPR <= 0.5%, PrimeVul) and the pair metrics P-C/P-V/P-B/P-R.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

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


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, *, groups: Sequence | None = None,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` items.

    ``statistic(idx)`` computes the number from the items at ``idx`` (an int array; an item may appear more than
    once); it is called once with ``arange(n)`` (the point estimate) and ``n_boot`` times with resamples.
    ``groups`` (one key per item, e.g. ``pair_id``; None: every item its own group): whole groups are resampled
    (a cluster bootstrap, so both sides of a pair stay together and pair metrics can be computed). A resample
    whose statistic is NaN (e.g. ROC-AUC of one class) is left out; ``n_valid`` says how many counted.
    Returns ``value``, ``low``, ``high``, ``level``, ``n_boot``, ``n_valid``. Seeded: the same call, the same
    interval. For a paired comparison of two models, let ``statistic`` return the difference on the same ``idx``.
    """
    if n <= 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "level": level, "n_boot": n_boot,
                "n_valid": 0}
    if groups is None:
        members = [np.array([i]) for i in range(n)]
    else:
        by: dict = {}
        for i, g in enumerate(groups):
            by.setdefault(("item", i) if g is None else ("group", g), []).append(i)
        members = [np.array(v) for v in by.values()]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        v = float(statistic(np.concatenate([members[k] for k in pick])))
        if not math.isnan(v):
            values.append(v)
    alpha = (1.0 - level) / 2
    low, high = (np.quantile(values, [alpha, 1 - alpha]).tolist() if values else [float("nan")] * 2)
    return {"value": float(statistic(np.arange(n))), "low": float(low), "high": float(high), "level": level,
            "n_boot": n_boot, "n_valid": len(values)}


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
