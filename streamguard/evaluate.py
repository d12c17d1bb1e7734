"""``streamguard evaluate``: a bundle on another dataset, with every metric of :mod:`streamguard.eval.metrics`.

The dataset is ingested with the same hygiene as training data (bad rows
quarantined, conflicting labels and duplicates removed; an ingested directory is
used as it is); then every function whose code (up to comments and whitespace,
``hygiene.code_key``) is in the bundle's training split is removed and counted
(``training_overlap``): a score on functions the model was trained on says
nothing. Every family of the bundle is scored at its own validation-tuned
threshold: precision, recall, F1, accuracy, ROC-AUC, PR-AUC, Brier, ECE, TPR at
0.5 % / 1 % FPR, VD-S, and the pair metrics P-C/P-V/P-B/P-R when rows carry
``pair_id``.

Output directory: ``evaluation.json``, ``evaluation.md``, ``predictions/<family>.jsonl``
(the ``predictions.jsonl`` format, so ``aggregate`` recomputes every number) and, when the
input was not yet ingested, ``data/`` (the ingested copy with its quarantine).

:func:`evaluate_external` is the pipeline's ``eval_uris`` step: each dataset
ingested once, every seed's bundle evaluated on it, an ``external.json`` index that
``aggregate`` reads (``external.<name>`` in ``production_summary.json``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

from streamguard.bundle import DEFAULT_BATCH, Bundle, load_bundle
from streamguard.config import Config
from streamguard.data.samples import Sample
from streamguard.errors import UserError
from streamguard.jsonio import read_json, write_json_atomic
from streamguard.predict import is_ingested, split_names

log = logging.getLogger(__name__)

EXTERNAL_INDEX = "external.json"
MD_COLS = (("n", "n"), ("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("roc_auc", "ROC-AUC"),
           ("pr_auc", "PR-AUC"), ("vd_s", "VD-S"), ("pair_correct", "P-C"), ("pair_vulnerable", "P-V"),
           ("pair_benign", "P-B"), ("pair_reversed", "P-R"))


def dataset_name(spec: str) -> tuple[str, str]:
    """``name=uri`` -> (name, uri); a bare URI is named after its last path part without extensions."""
    m = re.match(r"^([A-Za-z0-9_.-]+)=(.+)$", spec)
    if m and "/" not in m.group(1):
        name, uri = m.group(1), m.group(2)
    else:
        uri = spec
        name = Path(spec.rstrip("/").split("?")[0]).name.split(".")[0] or "dataset"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name), uri


def _ingested(data: str, out: Path, cfg: Config, fmt: str) -> tuple[str, dict]:
    """An ingested directory for ``data`` (ingesting it into ``out/data`` unless it is one) and its report."""
    from streamguard.data.ingest import ingest

    if is_ingested(data):
        return data, read_json(Path(data) / "data_report.json")
    report = ingest(data, str(out / "data"), cfg.data, fmt=fmt, max_tokens=cfg.transformer.max_length,
                    store_settings=cfg.store)
    return str(out / "data"), report


def evaluate(bundle: str | Bundle, data: str, out_dir: str | os.PathLike, cfg: Config, *, name: str | None = None,
             fmt: str = "auto", split: str = "all", batch_size: int = DEFAULT_BATCH,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate ``bundle`` on ``data`` (any input ``ingest`` reads, or an ingested directory); returns the
    evaluation (also written to ``out_dir``)."""
    from streamguard.data.hygiene import code_key
    from streamguard.data.samples import read_split
    from streamguard.eval.metrics import all_metrics, curves
    from streamguard.eval.predictions import write_predictions

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, cfg.store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir, report = _ingested(str(data), out, cfg, fmt)
    samples: list[Sample] = [s for sp in split_names(split) for s in read_split(data_dir, sp)]
    if b.train_keys:
        kept = [s for s in samples if code_key(s.func) not in b.train_keys]
    else:
        log.warning("bundle %s has no training index: functions seen in training cannot be removed", b.source)
        kept = list(samples)
    overlap = len(samples) - len(kept)
    if not kept:
        raise UserError(f"{data}: no functions left to evaluate ({len(samples)} read, {overlap} also in the "
                        "bundle's training split)")
    scores = b.score(kept, batch_size=batch_size, progress=progress, desc=f"evaluate {name or ''}".strip())
    y = [s.target for s in kept]
    pair_ids = [s.pair_id for s in kept]
    metrics, curve = {}, {}
    for fam, probs in scores.items():
        thr = b.thresholds[fam]
        write_predictions(out / "predictions" / f"{fam}.jsonl", [s.id for s in kept], y, probs.tolist(), thr, pair_ids)
        metrics[fam] = all_metrics(y, probs, thr, pair_ids)
        curve[fam] = curves(y, probs)
    result = {
        "name": name or dataset_name(str(data))[0],
        "input": str(data),
        "bundle": {"source": b.source, "head": b.head, "seed": b.card.get("seed"),
                   "data_fingerprint": b.card.get("data_fingerprint"), "thresholds": b.thresholds},
        "data_fingerprint": report.get("fingerprint"),
        "split": split,
        "counts": {"rows_read": report.get("rows_read"), "quarantined": report.get("quarantined"),
                   "hygiene_removed": sum((report.get("removed") or {}).values()), "functions": len(samples),
                   "training_overlap": overlap if b.train_keys else None, "evaluated": len(kept),
                   "vulnerable": sum(y), "pairs": metrics[b.head].get("pairs", 0)},
        "metrics": metrics,
        "curves": curve,
    }
    write_json_atomic(out / "evaluation.json", result)
    (out / "evaluation.md").write_text(render_markdown(result))
    m = metrics[b.head]
    log.info("evaluate %s: %d functions (%d removed as seen in training): %s F1 %.4f, ROC-AUC %.4f",
             result["name"], len(kept), overlap, b.head, m["f1"], m["roc_auc"])
    return result


def _f(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v}" if isinstance(v, int)
                                                                               else f"{v:.4f}")


def render_markdown(r: dict[str, Any]) -> str:
    c, b = r["counts"], r["bundle"]
    lines = [f"# Evaluation on {r['name']}", "",
             f"Input `{r['input']}` (split {r['split']}), bundle `{b['source']}` (seed {b['seed']}, trained on "
             f"data `{b['data_fingerprint']}`).", "",
             f"{c['functions']} functions after hygiene ({c['quarantined']} rows quarantined, {c['hygiene_removed']} "
             f"removed as duplicates or conflicting labels); {_f(c['training_overlap'])} also in the training split "
             f"removed; **{c['evaluated']} evaluated** ({c['vulnerable']} vulnerable, {c['pairs']} complete "
             "vulnerable/fixed pairs).", "",
             "| model | threshold | " + " | ".join(h for _, h in MD_COLS) + " |",
             "|---|---:|" + "---:|" * len(MD_COLS)]
    for fam, m in r["metrics"].items():
        lines.append(f"| {fam} | {b['thresholds'][fam]:.3f} | " + " | ".join(_f(m.get(k)) for k, _ in MD_COLS) + " |")
    lines += ["", "VD-S: false-negative rate at a false-positive rate of at most 0.5 %. P-C/P-V/P-B/P-R: shares of "
              "pairs predicted correctly / both vulnerable / both benign / reversed.", ""]
    return "\n".join(lines)


def evaluate_external(bundles: Sequence[str], eval_uris: Sequence[str], out_dir: str | os.PathLike, cfg: Config,
                      *, batch_size: int = DEFAULT_BATCH, progress: bool = True) -> dict[str, Any]:
    """Every bundle (one per seed) on every dataset of ``eval_uris`` (``name=uri`` or a URI); each dataset is
    ingested once. Writes ``<name>/seed-<seed>/`` evaluations and the ``external.json`` index; returns it."""
    from streamguard.data.ingest import ingest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"datasets": {}}
    loaded = [load_bundle(p, cfg.store) for p in bundles] if eval_uris else []
    for spec in eval_uris:
        name, uri = dataset_name(spec)
        base, k = name, 2
        while name in index["datasets"]:
            name, k = f"{base}-{k}", k + 1
        data_dir = out / name / "data"
        ingest(uri, str(data_dir), cfg.data, max_tokens=cfg.transformer.max_length, store_settings=cfg.store)
        runs = {}
        for b in loaded:
            seed = b.card.get("seed")
            rel = f"{name}/seed-{seed}"
            if rel in runs.values():
                raise UserError(f"eval_uris: two bundles of seed {seed}")
            evaluate(b, str(data_dir), out / rel, cfg, name=name, batch_size=batch_size, progress=progress)
            runs[str(seed)] = rel
        index["datasets"][name] = {"uri": uri, "seeds": runs}
    write_json_atomic(out / EXTERNAL_INDEX, index)
    return index
