"""``streamguard predict``: a bundle's scores for new functions.

Input: a dataset in any format ``ingest`` reads (JSONL of functions, Devign
JSON, BigVul CSV, DiverseVul, PrimeVul; a path, URL or ``s3://`` URI), where
``target`` may be missing (functions nobody has labelled), or an ingested
directory (its splits, all by default). Rows are validated as ``ingest``
validates them; bad ones go to ``quarantine.jsonl`` with their reason and are
counted, never scored and never a crash. No deduplication: every valid row is
scored.

Output directory: ``predictions.jsonl`` (:func:`~streamguard.eval.predictions.write_scores`:
``idx``, ``prob``/``label`` of the fused model at the bundle's threshold,
``prob_<family>``/``label_<family>`` of each family, ``target`` and ``pair_id``
when known), ``quarantine.jsonl`` and ``predict_report.json``. Graphs are built on
the fly by the graph builder the bundle's GNN was trained with, tokens by its
tokenizer; functions are scored in batches with a progress bar.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from streamguard.bundle import DEFAULT_BATCH, Bundle, load_bundle
from streamguard.config import DataConfig
from streamguard.data.samples import SPLITS, Sample, read_split
from streamguard.errors import UserError
from streamguard.jsonio import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)


class Read(NamedTuple):
    samples: list[Sample]
    labelled: list[bool]
    quarantine: list[dict]
    rows: int
    format: str


def is_ingested(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by ``streamguard ingest``."""
    p = Path(path)
    return p.is_dir() and (p / "data_report.json").is_file() and all((p / f"{s}.jsonl").is_file() for s in SPLITS)


def split_names(split: str) -> tuple[str, ...]:
    if split == "all":
        return SPLITS
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: expected all, {', '.join(SPLITS)}")
    return (split,)


def read_functions(uri: str, *, fmt: str = "auto", split: str = "all", max_func_bytes: int = DataConfig.max_func_bytes,
                   store_settings: Any = None) -> Read:
    """The functions of ``uri`` (an ingested directory or any input ``ingest`` reads) and the bad rows."""
    from streamguard.data.ingest import valid_rows
    from streamguard.data.loaders import fetch, load

    if is_ingested(uri):
        samples = [s for name in split_names(split) for s in read_split(uri, name)]
        return Read(samples, [True] * len(samples), [], len(samples), "ingested")
    with fetch(str(uri), store_settings) as local:
        loaded = load(local, fmt, display=str(uri))
    valid = valid_rows(loaded.rows, max_func_bytes, require_target=False)
    return Read(valid.samples, valid.labelled, valid.quarantine, len(loaded.rows), loaded.format)


def predict(bundle: str | Bundle, input_uri: str, out_dir: str | os.PathLike, *, fmt: str = "auto",
            split: str = "all", batch_size: int = DEFAULT_BATCH, max_func_bytes: int = DataConfig.max_func_bytes,
            store_settings: Any = None, progress: bool = True) -> dict[str, Any]:
    """Score every valid function of ``input_uri`` with ``bundle`` (a Bundle, path or URI); returns the report."""
    from streamguard.data.ingest import jsonl_bytes
    from streamguard.eval.predictions import SCORES_FILENAME, write_scores

    t0 = time.perf_counter()
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, store_settings)
    read = read_functions(input_uri, fmt=fmt, split=split, max_func_bytes=max_func_bytes,
                          store_settings=store_settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "quarantine.jsonl", jsonl_bytes(read.quarantine))
    if not read.samples:
        raise UserError(f"{input_uri}: no valid functions ({len(read.quarantine)} of {read.rows} rows quarantined; "
                        f"see {out / 'quarantine.jsonl'})")
    scores = b.score(read.samples, batch_size=batch_size, progress=progress, desc="predict")
    s = read.samples
    write_scores(out / SCORES_FILENAME, [x.id for x in s], scores, b.thresholds, b.head,
                 [x.target if known else None for x, known in zip(s, read.labelled)], [x.pair_id for x in s])
    head = scores[b.head]
    report = {
        "input": str(input_uri), "format": read.format, "bundle": b.source, "head": b.head,
        "thresholds": b.thresholds, "rows": read.rows, "scored": len(s), "quarantined": len(read.quarantine),
        "bad_rows": dict(sorted(Counter(q["reason"] for q in read.quarantine).items())),
        "flagged": int((head >= b.thresholds[b.head]).sum()), "labelled": sum(read.labelled),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json_atomic(out / "predict_report.json", report)
    log.info("predict %s: %d functions scored, %d flagged, %d rows quarantined", input_uri, len(s),
             report["flagged"], len(read.quarantine))
    return report
