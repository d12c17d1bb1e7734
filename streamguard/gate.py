"""The champion/challenger gate: both bundles scored on the same functions, promoted only when better.

The gate datasets are the new run's test split and every ``eval_uris`` set (their ingested copies in the
evaluate step's output). From each, functions whose code is in either bundle's training split
(``train_index.txt``) are removed, so neither model is scored on what it was trained on; both bundles then
score the *same* remaining functions (real predictions, :meth:`Bundle.score`), and ``publish.metric`` of each
head is computed at that bundle's own validation-tuned threshold (:mod:`streamguard.eval.metrics`).

Decision (``publish.rule``): ``every`` -- the challenger is better by more than ``publish.margin`` on every
dataset where the metric is defined (a single-class dataset has no PR-AUC); ``mean`` -- on the mean over
those datasets. ``vd_s``, ``brier`` and ``ece`` are better when lower; differences are always reported as
"challenger better by", so a positive number favours the challenger. Each difference carries a paired bootstrap
interval (both models on the same resampled functions; vulnerable/fixed pairs resampled together).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from streamguard.bundle import Bundle
from streamguard.data.samples import Sample

log = logging.getLogger(__name__)

LOWER_IS_BETTER = frozenset({"vd_s", "brier", "ece"})
CARD_METRICS = ("f1", "precision", "recall", "roc_auc", "pr_auc")
"""Test metrics of the card that get bootstrap intervals (plus ``publish.metric``)."""
TEST = "test"


def gate_datasets(data_dir: str | Path, external_dir: str | Path | None = None) -> list[tuple[str, list[Sample]]]:
    """``[("test", the test split), (name, every function of an eval_uris set) ...]``."""
    from streamguard.data.samples import read_split
    from streamguard.evaluate import EXTERNAL_INDEX
    from streamguard.jsonio import read_json
    from streamguard.predict import SPLITS

    sets = [(TEST, read_split(data_dir, "test"))]
    if external_dir and (Path(external_dir) / EXTERNAL_INDEX).is_file():
        for name in read_json(Path(external_dir) / EXTERNAL_INDEX)["datasets"]:
            d = Path(external_dir) / name / "data"
            sets.append((name, [s for sp in SPLITS for s in read_split(d, sp)]))
    return sets


def metric_fn(metric: str, threshold: float) -> Callable[[np.ndarray, np.ndarray, Sequence | None], float]:
    """``fn(y, p, pair_ids)``: the one metric, computed as :mod:`streamguard.eval.metrics` does (NaN if undefined)."""
    from sklearn import metrics as skm

    from streamguard.eval.metrics import all_metrics, pair_metrics

    def two(y) -> bool:
        return len(np.unique(y)) == 2

    if metric == "pr_auc":
        return lambda y, p, _: float(skm.average_precision_score(y, p)) if two(y) else float("nan")
    if metric == "roc_auc":
        return lambda y, p, _: float(skm.roc_auc_score(y, p)) if two(y) else float("nan")
    if metric in ("f1", "precision", "recall"):
        f = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
        return lambda y, p, _: float(f(y, (p >= threshold).astype(np.int64), zero_division=0))
    if metric == "pair_correct":
        def pc(y, p, pair_ids) -> float:
            from streamguard.eval.metrics import resampled_pairs

            if pair_ids is None:
                return float("nan")
            pairs = resampled_pairs(np.arange(len(y)), y, (p >= threshold).astype(np.int64), pair_ids)
            return float(pair_metrics(pairs)["pair_correct"]) if pairs else float("nan")
        return pc
    return lambda y, p, pair_ids: float(all_metrics(y, p, threshold, pair_ids).get(metric, float("nan")))


def counts_fn(metric: str, threshold: float, y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """:func:`metric_fn` of ``(y, p)`` in count form (``fn(counts [k, n]) -> [k]``, a batch of bootstrap resamples
    at once; :func:`streamguard.eval.metrics.weighted_metric`), or None for a metric without one (pair metrics).
    Same values as :func:`metric_fn` on the resampled arrays -- NaN where a resample lacks a class for an AUC --
    at a fraction of the cost (1,000 resamples x 5 metrics through scikit-learn took ~30 s of a publish)."""
    from streamguard.eval.metrics import WEIGHTED_METRICS, weighted_metric

    if metric not in WEIGHTED_METRICS:
        return None
    f = weighted_metric(metric, y, p, threshold)
    if metric not in ("pr_auc", "roc_auc"):
        return f
    pos = np.asarray(y, dtype=bool)

    def both_classes(c: np.ndarray) -> np.ndarray:
        c = np.atleast_2d(c)
        return np.where((c @ pos > 0) & (c @ ~pos > 0), f(c), np.nan)

    return both_classes


class Scorer:
    """The gate datasets and every bundle's head probabilities on them, each bundle scored once."""

    def __init__(self, sets: list[tuple[str, list[Sample]]], batch_size: int = 64, progress: bool = False):
        from streamguard.data.hygiene import code_key

        self.sets = sets
        self.keys = {name: [code_key(s.func) for s in samples] for name, samples in sets}
        self.y = {name: np.array([s.target for s in samples], dtype=np.int64) for name, samples in sets}
        self.pairs = {name: [s.pair_id for s in samples] for name, samples in sets}
        self.batch_size, self.progress = batch_size, progress
        self._probs: dict[tuple[str, str], np.ndarray] = {}

    def probs(self, b: Bundle, name: str) -> np.ndarray:
        key = (b.source, name)
        if key not in self._probs:
            samples = dict(self.sets)[name]
            self._probs[key] = b.score(samples, batch_size=self.batch_size, progress=self.progress,
                                       desc=f"gate {name}")[b.head] if samples else np.zeros(0)
        return self._probs[key]

    def kept(self, name: str, *bundles: Bundle) -> np.ndarray:
        """Indices of the functions of set ``name`` that none of ``bundles`` was trained on."""
        seen = frozenset().union(*(b.train_keys for b in bundles))
        return np.array([i for i, k in enumerate(self.keys[name]) if k not in seen], dtype=np.int64)


def _sub(seq: Sequence | None, idx: np.ndarray) -> list | None:
    return None if seq is None else [seq[i] for i in idx]


def _ci(stat: Callable[[np.ndarray], Any], n: int, groups: Sequence | None, n_boot: int,
        counts: bool = False) -> dict[str, float]:
    """:func:`~streamguard.eval.metrics.bootstrap_ci` of ``stat`` (index form, or with ``counts`` count form)."""
    from streamguard.eval.metrics import bootstrap_ci

    if n_boot <= 0:
        value = float(np.asarray(stat(np.ones((1, n))))[0]) if counts else stat(np.arange(n))
        return {"value": value, "low": float("nan"), "high": float("nan"), "n_boot": 0}
    return bootstrap_ci(stat, n, groups=groups, n_boot=n_boot, counts=counts)


def card_metrics(b: Bundle, scorer: Scorer, metric: str, n_boot: int) -> dict[str, Any]:
    """The bundle's head on the test split (functions it was trained on removed): every metric, and bootstrap
    intervals of :data:`CARD_METRICS` and ``metric``."""
    from streamguard.eval.metrics import all_metrics

    idx = scorer.kept(TEST, b)
    y, p = scorer.y[TEST][idx], scorer.probs(b, TEST)[idx]
    pair_ids = _sub(scorer.pairs[TEST], idx)
    thr = b.thresholds[b.head]
    out: dict[str, Any] = {"n": int(len(idx)), "threshold": thr, "metrics": all_metrics(y, p, thr, pair_ids),
                           "intervals": {}}
    groups = [g if g is not None else f"#{i}" for i, g in enumerate(pair_ids)] if pair_ids else None
    for m in dict.fromkeys((*CARD_METRICS, metric)):
        w = counts_fn(m, thr, y, p)
        if w is not None:
            ci = _ci(w, len(idx), groups, n_boot, counts=True)
        else:
            f = metric_fn(m, thr)
            ci = _ci(lambda i, f=f: f(y[i], p[i], _sub(pair_ids, i)), len(idx), groups, n_boot)
        out["intervals"][m] = {k: ci[k] for k in ("low", "high")} | {"level": ci.get("level", 0.95),
                                                                       "n_boot": ci["n_boot"]}
    return out


def _difference(sign: float, fc, fp, y: np.ndarray, pc: np.ndarray, pp: np.ndarray,
                pair_ids: Sequence | None) -> Callable[[np.ndarray], float]:
    """The paired statistic: "challenger better by" on the functions at ``idx`` (both models, same functions)."""
    return lambda i: sign * (fc(y[i], pc[i], _sub(pair_ids, i)) - fp(y[i], pp[i], _sub(pair_ids, i)))


def compare(challenger: Bundle, champion: Bundle, scorer: Scorer, *, metric: str, margin: float, rule: str,
            n_boot: int) -> dict[str, Any]:
    """Both bundles on every gate dataset; the decision (``promote``) and every number behind it."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    datasets: dict[str, Any] = {}
    for name, samples in scorer.sets:
        idx = scorer.kept(name, challenger, champion)
        row: dict[str, Any] = {"functions": len(samples), "n": int(len(idx)),
                               "removed_seen_in_training": len(samples) - int(len(idx))}
        if len(idx):
            y, pair_ids = scorer.y[name][idx], _sub(scorer.pairs[name], idx)
            pc, pp = scorer.probs(challenger, name)[idx], scorer.probs(champion, name)[idx]
            fc = metric_fn(metric, challenger.thresholds[challenger.head])
            fp = metric_fn(metric, champion.thresholds[champion.head])
            row["challenger"], row["champion"] = fc(y, pc, pair_ids), fp(y, pp, pair_ids)
            row["delta"] = sign * (row["challenger"] - row["champion"])
            groups = [g if g is not None else f"#{i}" for i, g in enumerate(pair_ids)]
            wc = counts_fn(metric, challenger.thresholds[challenger.head], y, pc)
            wp = counts_fn(metric, champion.thresholds[champion.head], y, pp)
            if wc is not None and wp is not None:
                ci = _ci(lambda c, wc=wc, wp=wp: sign * (wc(c) - wp(c)), len(idx), groups, n_boot, counts=True)
            else:
                ci = _ci(_difference(sign, fc, fp, y, pc, pp, pair_ids), len(idx), groups, n_boot)
            row["delta_interval"] = {"low": ci["low"], "high": ci["high"], "level": ci.get("level", 0.95),
                                     "n_boot": ci["n_boot"]}
        else:
            row["challenger"] = row["champion"] = row["delta"] = float("nan")
        row["defined"] = not math.isnan(row["delta"])
        row["better"] = bool(row["defined"] and row["delta"] > margin)
        datasets[name] = row
    defined = {n: r for n, r in datasets.items() if r["defined"]}

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in defined.values()])) if defined else float("nan")

    if not defined:
        promote, reason = False, f"{metric} is undefined on every gate dataset (one class only, or no functions)"
    elif rule == "every":
        worse = [n for n, r in defined.items() if not r["better"]]
        promote = not worse
        reason = (f"better by more than {margin:g} {metric} on every gate dataset ({', '.join(defined)})"
                  if promote else f"not better by more than {margin:g} {metric} on {', '.join(worse)}")
    else:
        promote = mean("delta") > margin
        reason = (f"mean {metric} over {', '.join(defined)} {'' if promote else 'not '}better by more than "
                  f"{margin:g} (by {mean('delta'):+.4f})")
    skipped = [n for n, r in datasets.items() if not r["defined"]]
    if skipped:
        reason += f"; {metric} undefined on {', '.join(skipped)} (not counted)"
    return {"metric": metric, "margin": margin, "rule": rule, "higher_is_better": sign > 0, "datasets": datasets,
            "challenger_score": mean("challenger"), "champion_score": mean("champion"), "delta": mean("delta"),
            "promote": bool(promote), "reason": reason}
