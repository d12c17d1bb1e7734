"""Filling KFP output artifacts without importing kfp.

Components pass their ``Output[Metrics]`` / ``Output[ClassificationMetrics]`` /
``Output[Model]`` objects here; these helpers only call the artifact methods
(``log_metric``, ``log_roc_curve``, ``log_confusion_matrix``) and set
``metadata``, so the logic stays in ``streamguard`` and is unit-testable with
any object of the same shape.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def log_scalars(metrics_artifact: Any, values: dict[str, Any], prefix: str = "") -> None:
    for k, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v)):
            metrics_artifact.log_metric(f"{prefix}{k}", float(v))


def log_classification(cls_artifact: Any, labels, probs, threshold: float) -> None:
    """Confusion matrix (rows = true class) and ROC curve of the test predictions."""
    from streamguard.eval.metrics import compute_metrics, curves

    m = compute_metrics(labels, probs, threshold)
    cls_artifact.log_confusion_matrix(["safe", "vulnerable"], [[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
    c = curves(labels, probs)
    if c["fpr"]:
        thr = [min(1.0, max(0.0, t)) for t in c["roc_thresholds"]]
        cls_artifact.log_roc_curve(c["fpr"], c["tpr"], thr)


def annotate(artifact: Any, card: dict[str, Any]) -> None:
    """Lineage-readable metadata on a model artifact: seed, F1, threshold, fingerprint, version."""
    test = card.get("test_metrics", {})
    artifact.metadata.update({
        "family": card.get("family"), "seed": card.get("seed"), "f1": test.get("f1"),
        "roc_auc": test.get("roc_auc"), "threshold": card.get("threshold"),
        "data_fingerprint": card.get("data_fingerprint"), "code_version": card.get("code_version"),
        "lr": card.get("lr"), "lr_source": card.get("lr_source"),
    })


def write_bundle_artifact(family: str, bundle: Any, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Fill a KFP ``Model`` artifact with the bundle of ``family``'s just-trained ``model`` and the models it is
    built on (its input artifacts named after those families); returns the manifest."""
    from streamguard import families
    from streamguard.bundle import members, write_bundle

    dirs = {name: inputs[name].path for name in members(family) if name != family}
    manifest = write_bundle(bundle.path, {**dirs, family: model.path}, data_dir=inputs["data"].path,
                            lineage={"kfp": {name: getattr(a, "uri", None) for name, a in {**inputs, family: model}
                                             .items() if name == "data" or name in families.names()}})
    head = manifest["head"]
    bundle.metadata.update({
        "format": manifest["format"], "head": head, "families": ",".join(manifest["families"]),
        "seed": manifest["card"]["seed"], "threshold": manifest["thresholds"][head],
        "valid_f1": (manifest["card"]["metrics"][head].get("valid") or {}).get("f1"),
        "test_f1": (manifest["card"]["metrics"][head].get("test") or {}).get("f1"),
        "graph_builder": manifest["graph_builder"], "data_fingerprint": manifest["card"]["data_fingerprint"],
        "code_version": manifest["card"]["code_version"],
    })
    return manifest


def train_and_log(family: str, *, seed: int, profile: str, overrides: dict, store_uri: str, run_key: str,
                  model: Any, result: Any, metrics: Any, cls_metrics: Any, bundle: Any = None,
                  **inputs: Any) -> dict[str, Any]:
    """The body of the training components: train one family for one seed, then fill the artifacts.

    ``inputs``: the family's input artifacts by name -- ``data`` and one per entry of the family's
    ``inputs`` (``graphs``, ``transformer``, ``gnn`` …); their ``.path`` is what training reads.
    ``bundle``: an ``Output[Model]`` to fill with the bundle of this model and the models it is built on
    (:func:`write_bundle_artifact`).
    """
    from streamguard import training
    from streamguard.config import load_config
    from streamguard.eval.predictions import read_predictions
    from streamguard.launch import launched
    from streamguard.stage import run_stage
    from streamguard.storage import open_store

    def go() -> dict[str, Any]:
        cfg = load_config(profile, overrides)
        store = open_store(store_uri or None, cfg.store)
        return training.train(family, {k: a.path for k, a in inputs.items()}, model.path, result.path, seed=seed,
                              cfg=cfg, store=store, run_key=run_key or None)

    # torchrun in this pod or a TrainJob when the compile profile asks for more than one GPU (streamguard/launch)
    card = run_stage(launched(go, family, seed=seed, profile=profile, overrides=overrides, store_uri=store_uri,
                              run_key=run_key, model=model, result=result, **inputs))
    log_scalars(metrics, card["test_metrics"], prefix="test_")
    log_scalars(metrics, {"threshold": card["threshold"], "seed": seed})
    _, y, p, _ = read_predictions(Path(result.path) / "predictions.jsonl")
    log_classification(cls_metrics, y, p, card["threshold"])
    annotate(model, card)
    annotate(result, card)
    if bundle is not None:
        run_stage(lambda: write_bundle_artifact(family, bundle, model, inputs))
    return card


def annotate_published(artifact: Any, result: dict[str, Any]) -> None:
    """Lineage-readable metadata on the publish step's ``Model`` artifact: where the bundle is, the version, the
    gate's decision and scores, the champion, the Model Registry ids (the KFP UI shows these)."""
    g, reg = result["gate"], result.get("registry") or {}
    meta = {
        "store_uri": result["uri"], "model_name": result["model_name"], "version": result["version"],
        "format": "streamguard-bundle", "seed": result["card"]["seed"], "decision": g["decision"],
        "promoted": bool(g["promoted"]), "gate_metric": g.get("metric"), "challenger_score": g.get("challenger_score"),
        "champion_score": g.get("champion_score"), "champion_before": g.get("champion_version"),
        "champion": result["champion"], "data_fingerprint": result["card"]["lineage"].get("data_fingerprint"),
        "image": result["card"]["lineage"].get("image"), "registered": bool(reg.get("registered")),
        "registry_model_version_id": reg.get("model_version_id"),
    }
    artifact.metadata.update({k: v for k, v in meta.items() if v is not None})  # KFP metadata has no null


def publish_and_log(bundles: list[str], *, data: Any, summary: Any, external: Any, profile: str, overrides: dict,
                    store_uri: str, promote: bool, run_id: str, published: Any, metrics: Any,
                    report: Any) -> dict[str, Any]:
    """The body of the publish component: :func:`streamguard.publish.publish`, then its UI metrics, the ``Model``
    artifact's metadata (:func:`annotate_published`) and the card as the ``Markdown`` report."""
    import shutil

    from streamguard.config import load_config
    from streamguard.publish import publish, publish_kfp_metrics
    from streamguard.stage import run_stage
    from streamguard.storage import open_store

    def go() -> dict[str, Any]:
        cfg = load_config(profile, overrides)
        return publish(bundles, data.path, published.path, cfg, store=open_store(store_uri or None, cfg.store),
                       summary_dir=summary.path, external_dir=external.path, promote=promote, run_id=run_id)

    result = run_stage(go)
    log_scalars(metrics, publish_kfp_metrics(result))
    annotate_published(published, result)
    shutil.copyfile(Path(published.path) / "report.md", report.path)
    return result
