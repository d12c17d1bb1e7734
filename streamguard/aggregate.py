"""Aggregate per-seed results into ``production_summary.json`` and a report.

Input: the result directories written by the training stages (each with
``model_card.json``, ``metrics.json``, ``training_metadata.json`` and
``predictions.jsonl``). Every number is recomputed here from
``predictions.jsonl`` at the threshold tuned on validation — the aggregator
does not trust a number it can compute — and checked against the stage's own.

External evaluations (the pipeline's ``eval_uris``, :func:`streamguard.evaluate.evaluate_external`)
are aggregated the same way, from their per-family predictions, into
``external.<name>`` (:func:`summarise_external`), a report section and UI metrics.
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


def load_external(external_dir: str | Path) -> list[dict[str, Any]]:
    """One record per (dataset, seed) of an ``evaluate_external`` output, metrics recomputed from its predictions."""
    from streamguard.evaluate import EXTERNAL_INDEX

    root = Path(external_dir)
    if not (root / EXTERNAL_INDEX).is_file():
        raise UserError(f"{root / EXTERNAL_INDEX}: missing; not the output of the evaluate step")
    records = []
    for name, ds in read_json(root / EXTERNAL_INDEX)["datasets"].items():
        for seed, rel in ds["seeds"].items():
            d = root / rel
            ev = read_json(d / "evaluation.json")
            metrics = {}
            for fam, thr in ev["bundle"]["thresholds"].items():
                _, y, p, pair_ids = read_predictions(d / "predictions" / f"{fam}.jsonl")
                metrics[fam] = all_metrics(y, p, thr, pair_ids)
            records.append({"name": name, "uri": ds["uri"], "seed": int(seed), "evaluation": ev, "metrics": metrics})
    return records


def summarise_external(records: Iterable[dict[str, Any]], data_fingerprint: str | None = None) -> dict[str, Any]:
    """``{name: {uri, n_seeds, counts per seed, models: {family: {seeds, mean, std, n_seeds}}}}``."""
    by_name: dict[str, list[dict]] = {}
    for r in records:
        by_name.setdefault(r["name"], []).append(r)
    out: dict[str, Any] = {}
    for name, rs in sorted(by_name.items()):
        rs.sort(key=lambda r: r["seed"])
        fps = {r["evaluation"]["bundle"].get("data_fingerprint") for r in rs}
        if data_fingerprint is not None and fps != {data_fingerprint}:
            raise UserError(f"external {name}: bundles trained on data {sorted(map(str, fps))}, not on this run's "
                            f"{data_fingerprint}")
        fams = list(dict.fromkeys(f for r in rs for f in r["metrics"]))
        models = {}
        for fam in fams:
            ms = [r["metrics"][fam] for r in rs if fam in r["metrics"]]
            keys = HEADLINE + (PAIR_KEYS if all("pairs" in m for m in ms) else ())
            mean, std = {}, {}
            for k in keys:
                mean[k], std[k] = _mean_std([m[k] for m in ms])
            models[fam] = {"seeds": {str(r["seed"]): {**{k: r["metrics"][fam][k] for k in keys},
                                                      "n": r["metrics"][fam]["n"],
                                                      "threshold": r["metrics"][fam]["threshold"]}
                                     for r in rs if fam in r["metrics"]},
                           "mean": mean, "std": std, "n_seeds": len(ms)}
        out[name] = {"uri": rs[0]["uri"], "n_seeds": len(rs),
                     "counts": {str(r["seed"]): r["evaluation"]["counts"] for r in rs}, "models": models}
    return out


def external_kfp_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """UI metrics of the external evaluations: ``external_<name>_<family>_<metric>_{mean,std}``."""
    out = {}
    for name, e in summary.get("external", {}).items():
        for fam, m in e["models"].items():
            for k in ("f1", "roc_auc", "vd_s", "pair_correct"):
                if k in m["mean"]:
                    out[f"external_{name}_{fam}_{k}_mean"] = m["mean"][k]
                    out[f"external_{name}_{fam}_{k}_std"] = m["std"][k]
    return {k: (0.0 if math.isnan(v) else round(float(v), 6)) for k, v in out.items()}


def kfp_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat scalar metrics for the KFP ``Metrics`` artifact (what the UI compares across runs)."""
    out = {}
    for fam, m in summary["models"].items():
        for k in ("f1", "precision", "recall", "accuracy", "roc_auc"):
            out[f"{fam}_{k}_mean"] = m["mean"][k]
            out[f"{fam}_{k}_std"] = m["std"][k]
    return {k: (0.0 if math.isnan(v) else round(float(v), 6)) for k, v in out.items()}


def aggregate(result_dirs: list[str], out_dir: str, external_dir: str | None = None) -> dict[str, Any]:
    """Write ``production_summary.json``, ``report.md`` and ``report.html`` into ``out_dir``.

    ``external_dir``: the output of the pipeline's evaluate step (``eval_uris``): ``external.<name>``."""
    from streamguard.report import render_external_html, render_external_markdown, render_html, render_markdown

    if not result_dirs:
        raise UserError("aggregate: no result directories given")
    results = [load_result(d) for d in result_dirs]
    summary = summarise(results)
    summary["external"] = summarise_external(load_external(external_dir), summary["data_fingerprint"]) \
        if external_dir else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "production_summary.json", summary)
    (out / "report.md").write_text(render_markdown(summary) + render_external_markdown(summary))
    (out / "report.html").write_text(render_html(summary, results).replace("</body>",
                                                                           render_external_html(summary) + "</body>"))
    for fam, m in summary["models"].items():
        log.info("%-12s test F1 %.4f ± %.4f over %d seeds (best seed %s)", fam, m["mean"]["f1"], m["std"]["f1"],
                 m["n_seeds"], m["best_seed"])
    return summary
