"""The per-format readers of ``streamguard.data.loaders``: one data file into :class:`~streamguard.data.rows.Row` s.

JSONL (CodeXGLUE, DiverseVul, PrimeVul, with PrimeVul's ``*_paired.jsonl`` pairs), a JSON array (Devign's
``function.json``), the BigVul CSV (a vulnerable row with a differing ``func_after`` gives a pair), and the
CodeXGLUE ``train/valid/test.txt`` index files; the encoding checks they share (UTF-8 with or without a BOM, CRLF
line ends; UTF-16/32 refused). The formats and encoding rules are in the module docstring of
``streamguard.data.loaders``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from streamguard.data.rows import EXCERPT_CHARS, SURROGATE, Row, excerpt_of, join_value, map_common
from streamguard.errors import UserError

# ----------------------------------------------------------------------------- encoding

UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
              (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE"))


def wide_encoding(head: bytes) -> str | None:
    """``UTF-16-LE`` ... when ``head`` (a file's first bytes) is UTF-16/32 text, else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return f"{name} (with byte-order mark)"
    sample = head[:512]
    half = len(sample) // 2
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if half >= 2 and max(even, odd) >= 0.8 * half and min(even, odd) <= 0.1 * half:  # ASCII as UTF-16
        return f"UTF-16-{'LE' if odd > even else 'BE'} (no byte-order mark)"
    return None


def check_encoding(path: Path, source: str) -> None:
    """UserError (one line, exit 2) for a UTF-16/32 file; UTF-8 with or without a BOM passes."""
    with open(path, "rb") as f:
        head = f.read(4096)
    enc = wide_encoding(head)
    if enc:
        raise UserError(f"{source}: file is encoded as {enc}; StreamGuard reads UTF-8 — save it as UTF-8 "
                        f"(e.g. `iconv -f UTF-16 -t UTF-8`)")


def strip_bom(raw: bytes) -> bytes:
    return raw[len(UTF8_BOM):] if raw.startswith(UTF8_BOM) else raw


def first_char(path: Path) -> str:
    with open(path, "rb") as f:
        head = strip_bom(f.read(4096)).lstrip()
    return head[:1].decode("latin-1")



# ----------------------------------------------------------------------------- readers


def iter_jsonl(path: Path, source: str) -> Iterator[tuple[int, str, Any, tuple[str, str] | None]]:
    """(line number, raw text, parsed object or None, error) for each non-blank line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1:
                raw = strip_bom(raw)
            if not raw.strip():  # blank, also "\r\n"; json.loads ignores a trailing "\r"
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, raw[:EXCERPT_CHARS].decode("utf-8", "replace"), None, \
                    ("non_utf8", f"invalid UTF-8 byte at offset {e.start}")
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                yield lineno, text, None, ("malformed_json", str(e).split(":")[0])
                continue
            if not isinstance(obj, dict):
                yield lineno, text, None, ("not_an_object", f"a JSON {type(obj).__name__}, not an object")
                continue
            yield lineno, text, obj, None


def read_jsonl(path: Path, source: str, fmt: str, split: str | None, id_prefix: str) -> list[Row]:
    rows: list[Row] = []
    paired = fmt == "primevul" and path.name.endswith("_paired.jsonl")
    for lineno, text, obj, err in iter_jsonl(path, source):
        if err:
            rows.append(Row(source, lineno, excerpt_of(text), error=err, split=split))
            continue
        idx = obj.get("idx") if fmt in ("codexglue", "primevul") else None
        data = map_common(obj, idx if idx is not None else f"{id_prefix}{lineno}")
        rows.append(Row(source, lineno, excerpt_of(text), data=data, split=split))
    if paired:  # consecutive rows: a vulnerable function, then its fix
        good = [r for r in rows if r.data is not None]
        for a, b in zip(good[0::2], good[1::2]):
            if {str(a.data["target"]), str(b.data["target"])} == {"0", "1"}:
                pid = f"{path.stem}:{a.data['id']}"
                a.data.setdefault("pair_id", pid)
                b.data.setdefault("pair_id", pid)
    return rows


def read_json_array(path: Path, source: str, split: str | None = None) -> list[Row]:
    raw = strip_bom(path.read_bytes())
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{source}: invalid UTF-8 byte at offset {e.start}") from None
    try:
        arr = json.loads(text)
    except ValueError as e:
        raise UserError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(arr, list):
        raise UserError(f"{source}: expected a JSON array of functions (Devign function.json), "
                        f"got {type(arr).__name__}")
    rows = []
    for pos, obj in enumerate(arr):
        if not isinstance(obj, dict):
            rows.append(Row(source, pos, excerpt_of(json.dumps(obj)),
                            error=("not_an_object", "array element is not an object")))
            continue
        rows.append(Row(source, pos, excerpt_of(json.dumps(obj, ensure_ascii=False)), data=map_common(obj, pos),
                        split=split))
    return rows


BIGVUL_REQUIRED = ("func_before",)
BIGVUL_LABEL = ("vul", "target")


def read_bigvul(path: Path, source: str, split: str | None = None) -> list[Row]:
    csv.field_size_limit(sys.maxsize)
    rows: list[Row] = []
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:  # -sig: drop a BOM
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise UserError(f"{source}: empty file (no CSV header)")
        missing = [c for c in BIGVUL_REQUIRED if c not in header]
        if not any(c in header for c in BIGVUL_LABEL):
            missing.append("vul")
        if missing:
            raise UserError(f"{source}: CSV missing required column {missing[0]!r} "
                            f"(found: {', '.join(h for h in header if h)[:200]})")
        label_col = next(c for c in BIGVUL_LABEL if c in header)
        id_col = next((c for c in ("", "Unnamed: 0", "index", "idx", "id") if c in header), None)
        n = 0
        try:
            for rec in reader:
                n += 1
                line = reader.line_num
                excerpt = excerpt_of(json.dumps({k: v for k, v in rec.items() if k in ("func_before", label_col)},
                                                ensure_ascii=False))
                if any(isinstance(v, str) and SURROGATE.search(v) for v in rec.values()):
                    rows.append(Row(source, line, excerpt, error=("non_utf8", "invalid UTF-8 bytes in a field")))
                    continue
                if None in rec:
                    rows.append(Row(source, line, excerpt,
                                    error=("malformed_csv", f"{len(rec[None])} more fields than the header")))
                    continue
                rid = (rec.get(id_col) if id_col is not None else None) or str(n - 1)
                base = {"project": join_value(rec.get("project")), "commit_id": join_value(rec.get("commit_id")),
                        "cwe": join_value(rec.get("CWE ID")), "cve": join_value(rec.get("CVE ID")),
                        "date": join_value(rec.get("Publish Date") or rec.get("commit_date") or rec.get("Update Date"))}
                before, after, label = rec.get("func_before"), rec.get("func_after"), rec.get(label_col)
                fixed_pair = str(label).strip() == "1" and after and after.strip() and after != before
                row = Row(source, line, excerpt, data={"id": str(rid), "func": before, "target": label, **base,
                                                       "pair_id": f"bigvul-{rid}" if fixed_pair else None},
                          split=split)
                rows.append(row)
                if fixed_pair:
                    rows.append(Row(source, line, excerpt, split=split,
                                    data={"id": f"{rid}-fixed", "func": after, "target": 0, **base,
                                          "pair_id": f"bigvul-{rid}"}))
        except csv.Error as e:
            raise UserError(f"{source}: malformed CSV at line {reader.line_num} ({e})") from None
    return rows


def read_file(path: Path, source: str, fmt: str, split: str | None = None, id_prefix: str = "") -> list[Row]:
    if path.stat().st_size == 0:
        raise UserError(f"{source}: empty file (no rows)")
    check_encoding(path, source)
    if fmt == "bigvul":
        if path.suffix.lower() != ".csv" and first_char(path) in "[{":
            raise UserError(f"{source}: --format bigvul expects the BigVul CSV file, this is JSON")
        return read_bigvul(path, source, split)
    if fmt == "devign" or (fmt == "codexglue" and first_char(path) == "["):
        return read_json_array(path, source, split)
    return read_jsonl(path, source, fmt, split, id_prefix)


def read_index(path: Path, source: str) -> set[str]:
    check_encoding(path, source)
    out = set()
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():  # BOM, CRLF
        if line.strip():
            out.add(line.strip().split()[0])
    return out
