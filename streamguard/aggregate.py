"""Aggregate per-seed results into ``production_summary.json`` and a report.

Input: the result directories written by the training stages (each with
``model_card.json``, ``metrics.json``, ``training_metadata.json`` and
``predictions.jsonl``). Every number is recomputed here from
``predictions.jsonl`` at the threshold tuned on validation — the aggregator
does not trust a number it can compute — and checked against the stage's own.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from streamguard import __version__
from streamguard.errors import UserError
from streamguard.eval.metrics import BOOTSTRAP_METRICS, compute_metrics, curves, pair_metrics, paired_bootstrap
from streamguard.eval.predictions import read_predictions
from streamguard.jsonio import read_json, write_json_atomic

log = logging.getLogger(__name__)

HEADLINE = ("f1", "precision", "recall", "accuracy", "roc_auc", "pr_auc", "brier", "ece", "tpr_at_fpr_0.5pct",
            "tpr_at_fpr_1pct", "vd_s")
PAIR_KEYS = ("pair_correct", "pair_vulnerable", "pair_benign", "pair_reversed")


def pairs_from_predictions(labels: np.ndarray, preds: np.ndarray, pair_ids: list) -> list[tuple[int, int]]:
    """(prediction on the vulnerable version, prediction on the fixed version) for each complete pair."""
    by_pair: dict[str, dict[int, int]] = {}
    for y, pred, pid in zip(labels, preds, pair_ids):
        if pid is not None:
            by_pair.setdefault(str(pid), {})[int(y)] = int(pred)
    return [(v[1], v[0]) for v in by_pair.values() if 0 in v and 1 in v]


def load_result(result_dir: str | Path) -> dict[str, Any]:
    d = Path(result_dir)
    for name in ("model_card.json", "training_metadata.json", "predictions.jsonl"):
        if not (d / name).is_file():
            raise UserError(f"{d / name}: missing; not a training result directory")
    card = read_json(d / "model_card.json")
    meta = read_json(d / "training_metadata.json")
    ids, y, p, pair_ids = read_predictions(d / "predictions.jsonl")
    metrics = compute_metrics(y, p, card["threshold"])
    pairs = pairs_from_predictions(y, (p >= card["threshold"]).astype(int), pair_ids)
    if pairs:
        metrics.update(pair_metrics(pairs))
    return {"dir": str(d), "family": card["family"], "seed": int(card["seed"]), "card": card, "metadata": meta,
            "ids": ids, "labels": y, "probs": p, "metrics": metrics, "curves": curves(y, p)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summarise(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    by_family: dict[str, list[dict]] = {}
    for r in results:
        by_family.setdefault(r["family"], []).append(r)
    fps = {r["card"].get("data_fingerprint") for rs in by_family.values() for r in rs}
    if len(fps) > 1:
        raise UserError(f"results come from different datasets (data fingerprints {sorted(map(str, fps))})")
    models: dict[str, Any] = {}
    for fam, rs in sorted(by_family.items()):
        rs.sort(key=lambda r: r["seed"])
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise UserError(f"{fam}: seed given twice among results {seeds}")
        per_seed = {str(r["seed"]): {**{k: r["metrics"][k] for k in HEADLINE}, "threshold": r["card"]["threshold"],
                                      "n_test": r["metrics"]["n"], "best_epoch": r["card"]["best_epoch"],
                                      "lr": r["card"].get("lr"), "lr_source": r["card"].get("lr_source")}
                    for r in rs}
        keys = HEADLINE + (PAIR_KEYS if all("pairs" in r["metrics"] for r in rs) else ())
        for r in rs:
            per_seed[str(r["seed"])].update({k: r["metrics"][k] for k in keys if k not in HEADLINE})
        mean, std = {}, {}
        for k in keys:
            mean[k], std[k] = _mean_std([r["metrics"][k] for r in rs])
        best = max(rs, key=lambda r: r["metrics"]["f1"])
        models[fam] = {"seeds": per_seed, "mean": mean, "std": std, "best_seed": best["seed"], "n_seeds": len(rs)}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": __version__,
        "data_fingerprint": next(iter(fps)) if fps else None,
        "models": models,
    }


# ---------------------------------------------------------------- ablation: a combined model vs. its parts

ABLATION_BOOT = 1000
"""Bootstrap resamples of the test split per comparison."""
ABLATION_SEED = 0
"""Seed of the resampling (the same seed, the same intervals)."""


def _aligned(a: dict[str, Any], b: dict[str, Any]) -> np.ndarray:
    """Indices into ``b``'s predictions in ``a``'s sample order; a UserError when the test samples differ."""
    pos = {i: k for k, i in enumerate(b["ids"])}
    if len(pos) != len(b["ids"]) or set(pos) != set(a["ids"]) or len(a["ids"]) != len(b["ids"]):
        raise UserError(f"{b['dir']}: its test samples differ from {a['dir']}'s; ablation needs one test split")
    idx = np.asarray([pos[i] for i in a["ids"]])
    if not np.array_equal(b["labels"][idx], a["labels"]):
        raise UserError(f"{b['dir']}: labels differ from {a['dir']}'s on the same test samples")
    return idx


def ablation(results: Iterable[dict[str, Any]], *, n_boot: int = ABLATION_BOOT,
             seed: int = ABLATION_SEED) -> dict[str, Any]:
    """Each model built on others (a family's ``requires``: the fusion) vs. each of them, per training seed,
    on the same test samples: F1 (each at its own validation-tuned threshold) and PR-AUC of both, and their
    paired difference, each with a percentile bootstrap interval over test samples
    (:func:`streamguard.eval.metrics.paired_bootstrap`). Plus, over seeds: the mean difference and on how
    many seeds the combined model is at least as good as the part."""
    from streamguard import families

    by = {(r["family"], r["seed"]): r for r in results}
    out: dict[str, Any] = {"n_boot": n_boot, "seed": seed, "level": 0.95, "metrics": list(BOOTSTRAP_METRICS),
                           "models": {}}
    for name in families.names():
        parts = [p for p in families.get(name).requires if any(f == p for f, _ in by)]
        seeds = sorted(s for f, s in by if f == name)
        if not parts or not seeds:
            continue
        per_seed: dict[str, Any] = {}
        for s in seeds:
            a = by[(name, s)]
            row: dict[str, Any] = {"n_test": len(a["ids"]), "vs": {}}
            for part in parts:
                b = by.get((part, s))
                if b is None:
                    continue
                idx = _aligned(a, b)
                row["vs"][part] = paired_bootstrap(a["labels"], a["probs"], a["card"]["threshold"], b["probs"][idx],
                                                   b["card"]["threshold"], n_boot=n_boot, seed=seed)
            per_seed[str(s)] = row
        overall: dict[str, Any] = {}
        for part in parts:
            rows = [r["vs"][part] for r in per_seed.values() if part in r["vs"]]
            overall[part] = {m: {"mean_diff": float(np.mean([r[m]["diff"]["value"] for r in rows])),
                                 "seeds_at_least_as_good": int(sum(r[m]["diff"]["value"] >= 0 for r in rows)),
                                 "seeds_better": int(sum(r[m]["diff"]["low"] > 0 for r in rows)),
                                 "seeds_worse": int(sum(r[m]["diff"]["high"] < 0 for r in rows)),
                                 "n_seeds": len(rows)} for m in BOOTSTRAP_METRICS}
        out["models"][name] = {"parts": parts, "seeds": per_seed, "overall": overall}
    return out


def ablation_scalars(abl: dict[str, Any]) -> dict[str, float]:
    """The ablation as flat UI scalars: ``<model>_vs_<part>_<metric>_diff`` (mean over seeds) and, per seed,
    ``..._diff_s<seed>`` with its ``_low``/``_high`` interval bounds."""
    out: dict[str, float] = {}
    for name, m in abl.get("models", {}).items():
        for part, o in m["overall"].items():
            for met, v in o.items():
                out[f"{name}_vs_{part}_{met}_diff_mean"] = v["mean_diff"]
        for s, row in m["seeds"].items():
            for part, cmp in row["vs"].items():
                for met, v in cmp.items():
                    key = f"{name}_vs_{part}_{met}_diff"
                    out[f"{key}_s{s}"] = v["diff"]["value"]
                    out[f"{key}_low_s{s}"] = v["diff"]["low"]
                    out[f"{key}_high_s{s}"] = v["diff"]["high"]
    return out


def kfp_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat scalar metrics for the KFP ``Metrics`` artifact (what the UI compares across runs)."""
    out = {}
    for fam, m in summary["models"].items():
        for k in ("f1", "precision", "recall", "accuracy", "roc_auc"):
            out[f"{fam}_{k}_mean"] = m["mean"][k]
            out[f"{fam}_{k}_std"] = m["std"][k]
    out.update(ablation_scalars(summary.get("ablation", {})))
    return {k: (0.0 if math.isnan(v) else round(float(v), 6)) for k, v in out.items()}


def aggregate(result_dirs: list[str], out_dir: str) -> dict[str, Any]:
    """Write ``production_summary.json``, ``report.md`` and ``report.html`` into ``out_dir``."""
    from streamguard.report import render_html, render_markdown

    if not result_dirs:
        raise UserError("aggregate: no result directories given")
    results = [load_result(d) for d in result_dirs]
    summary = summarise(results)
    summary["ablation"] = ablation(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "production_summary.json", summary)
    (out / "report.md").write_text(render_markdown(summary))
    (out / "report.html").write_text(render_html(summary, results))
    for fam, m in summary["models"].items():
        log.info("%-12s test F1 %.4f ± %.4f over %d seeds (best seed %s)", fam, m["mean"]["f1"], m["std"]["f1"],
                 m["n_seeds"], m["best_seed"])
    for name, m in summary["ablation"]["models"].items():
        for part, o in m["overall"].items():
            log.info("%s - %s: test F1 %+.4f on average, at least as good on %d of %d seeds", name, part,
                     o["f1"]["mean_diff"], o["f1"]["seeds_at_least_as_good"], o["f1"]["n_seeds"])
    return summary
