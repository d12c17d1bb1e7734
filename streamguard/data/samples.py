"""The Sample contract (DESIGN.md): one C function a JSONL line.

Required: ``id`` (str), ``func`` (C source), ``target`` (0 safe, 1 vulnerable).
Optional: ``project``, ``commit_id``, ``cwe``, ``cve``, ``pair_id``, ``date``.

An ingested dataset is a directory holding ``train.jsonl``, ``valid.jsonl``,
``test.jsonl`` (Samples), ``quarantine.jsonl`` and ``data_report.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from streamguard.atomic import atomic_write
from streamguard.errors import UserError

SPLITS = ("train", "valid", "test")
OPTIONAL_FIELDS = ("project", "commit_id", "cwe", "cve", "pair_id", "date")


@dataclass
class Sample:
    id: str
    func: str
    target: int
    project: str | None = None
    commit_id: str | None = None
    cwe: str | None = None
    cve: str | None = None
    pair_id: str | None = None
    date: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> "Sample":
        return cls(**{k: d.get(k) for k in ("id", "func", "target", *OPTIONAL_FIELDS)})


def write_samples(path: str | os.PathLike, samples: Iterable[Sample]) -> int:
    n = 0
    with atomic_write(path, "w") as f:
        for s in samples:
            f.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_samples(path: str | os.PathLike) -> list[Sample]:
    """Read a Sample JSONL file; a bad row is a UserError naming file, line, field and value."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing (is {path.parent} the output of `streamguard ingest`?)")
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.args[0][:80]})") from None
            if not isinstance(d, dict):
                raise UserError(f"{path}:{lineno}: row is {type(d).__name__}, expected an object")
            for field, ok in (("id", lambda v: isinstance(v, (str, int)) and not isinstance(v, bool)),
                              ("func", lambda v: isinstance(v, str)),
                              ("target", lambda v: v in (0, 1) and not isinstance(v, float))):
                if field not in d or not ok(d[field]):
                    raise UserError(f"{path}:{lineno}: field {field!r} is {d.get(field, '<missing>')!r:.60}"
                                    + (", expected 0 or 1" if field == "target" else ""))
            d["id"] = str(d["id"])
            out.append(Sample.from_json(d))
    return out


def read_split(data_dir: str | os.PathLike, split: str) -> list[Sample]:
    return read_samples(Path(data_dir) / f"{split}.jsonl")


def fingerprint(splits: dict[str, list[Sample]]) -> str:
    """Content hash of an ingested dataset: ids, code, labels and split membership."""
    h = hashlib.sha256()
    for split in sorted(splits):
        for s in sorted(splits[split], key=lambda s: s.id):
            h.update(f"{split}\0{s.id}\0{s.target}\0".encode())
            h.update(hashlib.sha256(s.func.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()[:16]
