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
from streamguard.eval.metrics import (
    BOOTSTRAP_METRICS,
    all_metrics,
    curves,
    paired_bootstrap,
)
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
    summary["ablation"] = ablation(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "production_summary.json", summary)
    (out / "report.md").write_text(render_markdown(summary) + render_external_markdown(summary))
    (out / "report.html").write_text(render_html(summary, results).replace("</body>",
                                                                           render_external_html(summary) + "</body>"))
    for fam, m in summary["models"].items():
        log.info("%-12s test F1 %.4f ± %.4f over %d seeds (best seed %s)", fam, m["mean"]["f1"], m["std"]["f1"],
                 m["n_seeds"], m["best_seed"])
    for name, m in summary["ablation"]["models"].items():
        for part, o in m["overall"].items():
            log.info("%s - %s: test F1 %+.4f on average, at least as good on %d of %d seeds", name, part,
                     o["f1"]["mean_diff"], o["f1"]["seeds_at_least_as_good"], o["f1"]["n_seeds"])
    return summary
