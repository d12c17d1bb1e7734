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
from streamguard.eval.metrics import all_metrics, curves
from streamguard.eval.predictions import read_predictions
from streamguard.jsonio import read_json, write_json_atomic

log = logging.getLogger(__name__)

HEADLINE = ("f1", "precision", "recall", "accuracy", "roc_auc", "pr_auc", "brier", "ece", "tpr_at_fpr_0.5pct",
            "tpr_at_fpr_1pct", "vd_s")
PAIR_KEYS = ("pair_correct", "pair_vulnerable", "pair_benign", "pair_reversed")


def load_result(result_dir: str | Path) -> dict[str, Any]:
    d = Path(result_dir)
    for name in ("model_card.json", "training_metadata.json", "predictions.jsonl"):
        if not (d / name).is_file():
            raise UserError(f"{d / name}: missing; not a training result directory")
    card = read_json(d / "model_card.json")
    meta = read_json(d / "training_metadata.json")
    ids, y, p, pair_ids = read_predictions(d / "predictions.jsonl")
    metrics = all_metrics(y, p, card["threshold"], pair_ids)
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


def kfp_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat scalar metrics for the KFP ``Metrics`` artifact (what the UI compares across runs)."""
    out = {}
    for fam, m in summary["models"].items():
        for k in ("f1", "precision", "recall", "accuracy", "roc_auc"):
            out[f"{fam}_{k}_mean"] = m["mean"][k]
            out[f"{fam}_{k}_std"] = m["std"][k]
    return {k: (0.0 if math.isnan(v) else round(float(v), 6)) for k, v in out.items()}


def aggregate(result_dirs: list[str], out_dir: str) -> dict[str, Any]:
    """Write ``production_summary.json``, ``report.md`` and ``report.html`` into ``out_dir``."""
    from streamguard.report import render_html, render_markdown

    if not result_dirs:
        raise UserError("aggregate: no result directories given")
    results = [load_result(d) for d in result_dirs]
    summary = summarise(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "production_summary.json", summary)
    (out / "report.md").write_text(render_markdown(summary))
    (out / "report.html").write_text(render_html(summary, results))
    for fam, m in summary["models"].items():
        log.info("%-12s test F1 %.4f ± %.4f over %d seeds (best seed %s)", fam, m["mean"]["f1"], m["std"]["f1"],
                 m["n_seeds"], m["best_seed"])
    return summary
