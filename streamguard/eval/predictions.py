"""``predictions.jsonl``: the per-item test predictions a training stage writes and ``aggregate`` reads.

One JSON object a line, in test-split order: ``idx`` (the sample id; an int
when it is all digits), ``label`` (0/1), ``prob`` (vulnerable-class
probability, rounded to 6 places), ``pred`` (``prob >= threshold``) and
``pair_id`` where the sample has one. The writer and the reader live side by
side so the format has one home. ``streamguard predict`` writes a file of the same
name with a bundle's scores per family (:func:`write_scores`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from streamguard.errors import UserError
from streamguard.jsonio import write_bytes_atomic

FILENAME = "predictions.jsonl"


def write_predictions(path: str | os.PathLike, ids: Sequence, labels: Sequence[int], probs: Sequence[float],
                      threshold: float, pair_ids: Sequence | None = None) -> None:
    """Write the rows atomically; ``pair_ids`` None (or a None entry) leaves ``pair_id`` out."""
    pairs = pair_ids or [None] * len(ids)
    rows = []
    for i, y, p, pair in zip(ids, labels, probs, pairs):
        p = float(p)
        row = {"idx": int(i) if str(i).isdigit() else str(i), "label": int(y), "prob": round(p, 6),
               "pred": int(p >= threshold)}
        if pair is not None:
            row["pair_id"] = pair
        rows.append(json.dumps(row))
    write_bytes_atomic(Path(path), "".join(r + "\n" for r in rows).encode())


def read_predictions(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray, list]:
    """``(ids, labels, probs, pair_ids)`` from a predictions.jsonl (pair id None where absent)."""
    ids, y, p, pairs = [], [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    ids.append(str(row["idx"]))
                    y.append(int(row["label"]))
                    p.append(float(row["prob"]))
                    pairs.append(row.get("pair_id"))
                except (ValueError, KeyError) as e:
                    raise UserError(f"{path}: line {n}: bad prediction row ({e})") from None
    return ids, np.asarray(y), np.asarray(p), pairs


SCORES_FILENAME = "predictions.jsonl"
"""``predict``'s output (same name, other rows: see :func:`write_scores`)."""


def write_scores(path: str | os.PathLike, ids: Sequence, scores: Mapping[str, Sequence[float]],
                 thresholds: Mapping[str, float], head: str, targets: Sequence[int | None] | None = None,
                 pair_ids: Sequence | None = None) -> None:
    """``predict``'s rows, atomically: ``idx``; ``prob`` and ``label`` (``prob >= threshold``, the bundle's
    validation-tuned one) of the bundle's head (the fused score); ``prob_<family>`` and ``label_<family>``
    for every family; ``target`` where the input had a label and ``pair_id`` where it had a pair."""
    n = len(ids)
    targets = targets if targets is not None else [None] * n
    pairs = pair_ids if pair_ids is not None else [None] * n
    rows = []
    for k, i in enumerate(ids):
        row: dict = {"idx": int(i) if str(i).isdigit() else str(i)}
        p = float(scores[head][k])
        row["prob"], row["label"] = round(p, 6), int(p >= thresholds[head])
        for fam, probs in scores.items():
            q = float(probs[k])
            row[f"prob_{fam}"], row[f"label_{fam}"] = round(q, 6), int(q >= thresholds[fam])
        if targets[k] is not None:
            row["target"] = int(targets[k])
        if pairs[k] is not None:
            row["pair_id"] = pairs[k]
        rows.append(json.dumps(row))
    write_bytes_atomic(Path(path), "".join(r + "\n" for r in rows).encode())
