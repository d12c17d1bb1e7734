"""Loaders: dataset files in the formats the field uses, mapped onto Sample fields.

Formats (``fmt``; ``auto`` detects):

* ``codexglue`` — JSONL ``func``, ``target``, ``idx``, ``project``, ``commit_id`` (the
  Devign/CodeXGLUE defect-detection rows; also any in-house export with ``func`` and
  ``target``). A directory holding ``train.jsonl``/``valid.jsonl``/``test.jsonl`` gives the
  published split by file; a directory holding one data file (``function.json`` or a
  ``.jsonl``) and ``train.txt``/``valid.txt``/``test.txt`` index files (one ``idx`` a line)
  reproduces the CodeXGLUE split exactly.
* ``devign`` — Devign's ``function.json``: one JSON array of ``{project, commit_id,
  target, func}``; ``idx`` is the array position (as CodeXGLUE's preprocess assigns it).
* ``bigvul`` — BigVul CSV (``func_before``, ``func_after``, ``vul``, ``CVE ID``,
  ``CWE ID``, ``project``, ``commit_id``, ``Publish Date`` …). A vulnerable row whose
  ``func_after`` differs yields a pair: the function before (target 1) and after the fix
  (target 0), one ``pair_id``.
* ``diversevul`` — JSONL ``func``, ``target``, ``cwe`` (list), ``project``, ``commit_id``,
  ``hash``, ``size``, ``message``.
* ``primevul`` — JSONL ``idx``, ``func``, ``target``, ``cwe`` (list), ``cve``, ``project``,
  ``commit_id`` …; in ``*_paired.jsonl`` consecutive rows are a vulnerable function and its
  fix (one ``pair_id``). A directory of ``primevul_{train,valid,test}[_paired].jsonl``
  gives the published split by file.

Rows come back as :class:`Row` (source file, line, raw excerpt, mapped fields or the
reason they are bad); :func:`to_sample` validates one. Whole-input problems (unknown
format, missing CSV column, empty file, unreadable URL) raise :class:`UserError`.

Every file is read as UTF-8 as editors write it: a UTF-8 byte-order mark (Windows
Notepad, Excel's "CSV UTF-8") is dropped and CRLF line ends are accepted, in JSONL,
JSON arrays, CSV and the CodeXGLUE index files. A UTF-16 or UTF-32 file (a BOM, or the
NUL bytes of one without) is refused with one line naming the encoding.

Compressed inputs: a file ending in ``.gz`` (stdlib ``gzip``) or ``.zst`` (the
``zstandard`` package, a dependency) -- by
path, URL or ``s3://``, alone or inside an input directory (``train.jsonl.gz`` …) --
is decompressed into a temporary directory (streamed, never held in memory) and
read as the file it holds (``data.jsonl.gz`` as ``data.jsonl``), with every rule
above; sources in the quarantine and the report keep the compressed name. A
corrupt archive is one line naming the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from streamguard.data.readers import check_encoding, first_char, read_file, read_index, strip_bom
from streamguard.data.rows import Row, is_missing, to_sample
from streamguard.data.sources import decompressed, fetch
from streamguard.errors import UserError

__all__ = ["ALIASES", "FORMATS", "Loaded", "Row", "detect_format", "fetch", "is_missing", "load", "resolve_format",
           "to_sample"]

FORMATS = ("codexglue", "devign", "bigvul", "diversevul", "primevul")
ALIASES = {"jsonl": "codexglue", "devign-jsonl": "codexglue", "function.json": "devign", "big-vul": "bigvul",
           "msr": "bigvul"}


@dataclass
class Loaded:
    format: str
    files: list[str]
    rows: list[Row]
    published: bool = False
    unassigned: list[Row] = field(default_factory=list)
    """Valid rows that no published index file names (reported, not used)."""


# ----------------------------------------------------------------------------- detection


def _first_objects(path: Path, limit: int = 20) -> list[dict]:
    out = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= 200 or len(out) >= limit:
                break
            try:
                obj = json.loads(strip_bom(line) if i == 0 else line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _detect_file(path: Path) -> str:
    if path.stat().st_size:
        check_encoding(path, str(path))
    if path.stat().st_size == 0 or not first_char(path):
        raise UserError(f"{path}: empty file (no rows)")
    if path.suffix.lower() == ".csv":
        return "bigvul"
    if first_char(path) == "[":
        return "devign"
    if path.name.endswith("_paired.jsonl"):
        return "primevul"
    objs = _first_objects(path)
    keys = set().union(*objs) if objs else set()
    if "func" in keys:  # rows without "target" are read too: ingest quarantines them, predict scores them
        if keys & {"func_hash", "cve_desc", "nvd_url", "file_hash"}:
            return "primevul"
        if "hash" in keys and keys & {"size", "message"}:
            return "diversevul"
        return "codexglue"
    if {"func_before", "vul"} & keys:
        raise UserError(f"{path}: looks like BigVul but is not CSV; BigVul is read from its CSV file")
    raise UserError(f"{path}: cannot detect the format (no JSON rows with 'func'); "
                    f"name it with --format ({', '.join(FORMATS)})")


def detect_format(path: Path) -> str:
    if not path.is_dir():
        return _detect_file(path)
    names = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not names:
        raise UserError(f"{path}: empty directory")
    if any(n.startswith("primevul") or n.endswith("_paired.jsonl") for n in names):
        return "primevul"
    if "function.json" in names:
        return "devign"
    if any(n.endswith(".csv") for n in names):
        return "bigvul"
    data = [n for n in names if n.endswith((".jsonl", ".json"))]
    if data:
        fmt = _detect_file(path / data[0])
        return "codexglue" if fmt == "devign" else fmt
    raise UserError(f"{path}: cannot detect the format of this directory (files: {', '.join(names[:8])}); "
                    f"name it with --format ({', '.join(FORMATS)})")


def resolve_format(fmt: str, path: Path) -> str:
    name = (fmt or "auto").strip().lower()
    name = ALIASES.get(name, name)
    if name == "auto":
        return detect_format(path)
    if name not in FORMATS:
        raise UserError(f"--format {fmt!r}: unknown format (known: auto, {', '.join(FORMATS)})")
    return name


# ----------------------------------------------------------------------------- loading


_SPLIT_WORDS = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}


def _split_of_name(name: str) -> str | None:
    words = re.split(r"[^a-z]+", name.lower())
    hits = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return hits.pop() if len(hits) == 1 else None


def load(path: Path, fmt: str, display: str | None = None) -> Loaded:
    """Read ``path`` (a file or a directory, compressed files included) in format ``fmt`` (``auto`` detects)."""
    display = display or str(path)
    with decompressed(Path(path), display) as (local, names):
        try:
            return _load(local, fmt, display, names)
        except UserError as e:
            if local == Path(path):
                raise
            raise UserError(str(e).replace(str(local), display)) from None  # name the input, not the temporary copy


def _load(path: Path, fmt: str, display: str, names: dict[str, str]) -> Loaded:
    fmt = resolve_format(fmt, path)
    if not path.is_dir():
        return Loaded(fmt, [display], read_file(path, display, fmt))

    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))

    def src(p: Path) -> str:
        rel = p.relative_to(path).as_posix()
        return f"{display.rstrip('/')}/{names.get(rel, rel)}"

    index = {p.stem: p for p in files if p.suffix == ".txt" and p.stem in ("train", "valid", "test")}
    ext = {"bigvul": (".csv",), "devign": (".json",)}.get(fmt, (".jsonl", ".json"))
    data_files = [p for p in files if p.suffix.lower() in ext]
    if fmt == "primevul":  # pairs first, so dedup keeps the copy that knows its pair
        data_files.sort(key=lambda p: (not p.name.endswith("_paired.jsonl"), p.name))
    if not data_files:
        raise UserError(f"{display}: no {'/'.join(ext)} data files for format {fmt}")

    if index and len(data_files) == 1:  # CodeXGLUE: one data file + train/valid/test.txt index files
        missing = [s for s in ("train", "valid", "test") if s not in index]
        if missing:
            raise UserError(f"{display}: index file {missing[0]}.txt missing "
                            "(CodeXGLUE needs train.txt, valid.txt, test.txt)")
        membership: dict[str, str] = {}
        for split in ("train", "valid", "test"):
            for idx in read_index(index[split], src(index[split])):
                membership.setdefault(idx, split)
        rows = read_file(data_files[0], src(data_files[0]), fmt)
        kept, unassigned = [], []
        for r in rows:
            if r.data is not None:
                r.split = membership.get(str(r.data.get("id")))
                if r.split is None:
                    unassigned.append(r)
                    continue
            kept.append(r)
        return Loaded(fmt, [src(data_files[0])] + [src(index[s]) for s in ("train", "valid", "test")], kept,
                      published=True, unassigned=unassigned)

    splits = {p: _split_of_name(p.stem) for p in data_files}
    published = len(data_files) > 1 and all(splits.values()) and len(set(splits.values())) == 3
    if len(data_files) > 1 and not published:
        raise UserError(f"{display}: {len(data_files)} data files but no train/valid/test naming "
                        f"({', '.join(p.name for p in data_files[:6])}); give one file or split-named files")
    rows = []
    for p in data_files:
        rows += read_file(p, src(p), fmt, splits[p] if published else None,
                          id_prefix=f"{p.stem}:" if published else "")
    return Loaded(fmt, [src(p) for p in data_files], rows, published=published)
