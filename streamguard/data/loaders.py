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
``zstandard`` package, when installed; it is not a StreamGuard dependency) -- by
path, URL or ``s3://``, alone or inside an input directory (``train.jsonl.gz`` …) --
is decompressed into a temporary directory (streamed, never held in memory) and
read as the file it holds (``data.jsonl.gz`` as ``data.jsonl``), with every rule
above; sources in the quarantine and the report keep the compressed name. A
corrupt archive is one line naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from streamguard.data.samples import Sample
from streamguard.errors import StreamGuardError, UserError

FORMATS = ("codexglue", "devign", "bigvul", "diversevul", "primevul")
ALIASES = {"jsonl": "codexglue", "devign-jsonl": "codexglue", "function.json": "devign", "big-vul": "bigvul",
           "msr": "bigvul"}
EXCERPT_CHARS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Row:
    source: str
    line: int
    raw: str
    data: dict[str, Any] | None = None
    """Sample fields (``id``, ``func``, ``target``, optional ones), not yet validated."""
    error: tuple[str, str] | None = None
    """(reason, detail) when the row could not even be read."""
    split: str | None = None
    """Published split, when the input carries one."""


@dataclass
class Loaded:
    format: str
    files: list[str]
    rows: list[Row]
    published: bool = False
    unassigned: list[Row] = field(default_factory=list)
    """Valid rows that no published index file names (reported, not used)."""


# ----------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def fetch(uri: str, store_settings: Any = None) -> Iterator[Path]:
    """A local path for ``uri`` (path, ``file://``, ``http(s)://`` or ``s3://bucket/key-or-prefix``).

    Remote inputs are downloaded into a temporary directory removed afterwards. ``store_settings``: a
    ``config.StoreConfig`` for an s3:// input (retry budget; None: ``open_store``'s default).
    """
    if uri.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="sg-fetch-") as tmp:
            name = Path(urllib.request.urlparse(uri).path).name or "input"
            dest = Path(tmp) / name
            try:
                with urllib.request.urlopen(uri, timeout=60) as resp, open(dest, "wb") as f:
                    shutil.copyfileobj(resp, f, 1 << 20)
            except urllib.error.HTTPError as e:
                raise UserError(f"{uri}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                raise UserError(f"{uri}: cannot download ({getattr(e, 'reason', e)})") from None
            yield dest
        return
    if uri.startswith("s3://"):
        from streamguard.storage import open_store

        bucket, _, key = uri[len("s3://"):].partition("/")
        key = key.strip("/")
        store = open_store(f"s3://{bucket}", store_settings)
        with tempfile.TemporaryDirectory(prefix="sg-fetch-") as tmp:
            try:
                if key and store.exists(key):
                    dest = Path(tmp) / Path(key).name
                    store.get_file(key, dest)
                else:
                    keys = store.list(key + "/" if key else "")
                    if not keys:
                        raise UserError(f"{uri}: no such object or prefix")
                    dest = Path(tmp) / (Path(key).name or bucket)
                    for k in keys:
                        store.get_file(k, dest / k[len(key):].lstrip("/"))
            except StreamGuardError:  # incl. the store's verdicts: unavailable past its budget, access denied
                raise
            except Exception as e:  # anything else the client raised
                raise UserError(f"{uri}: cannot read from the object store ({type(e).__name__}: {e})") from None
            yield dest
        return
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not path.exists():
        raise UserError(f"{uri}: no such file or directory")
    yield path


# ----------------------------------------------------------------------------- compression

COMPRESSED = (".gz", ".zst")


def compressed(path: Path) -> bool:
    return path.suffix.lower() in COMPRESSED


def _open_compressed(path: Path, source: str):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")
    try:
        import zstandard
    except ImportError:
        raise UserError(f"{source}: a .zst file needs the zstandard package (pip install zstandard), "
                        "or give it as .gz or uncompressed") from None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)


def _decompress(path: Path, dest: Path, source: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _open_compressed(path, source) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except UserError:
        raise
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError; zlib/zstd errors too
        kind = "gzip" if path.suffix.lower() == ".gz" else "zstd"
        raise UserError(f"{source}: not a readable {kind} file ({type(e).__name__}: {str(e) or 'truncated'})") \
            from None


@contextlib.contextmanager
def decompressed(path: Path, display: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """``path`` with its compressed files decompressed (see the module docstring), and a map from each
    decompressed file's path (relative to the input directory; ``""`` for a single file) to its original name."""
    if path.is_file() and not compressed(path):
        yield path, {}
        return
    if path.is_dir() and not any(compressed(p) for p in path.rglob("*") if p.is_file()):
        yield path, {}
        return
    with tempfile.TemporaryDirectory(prefix="sg-unpack-") as tmp:
        if path.is_file():
            dest = Path(tmp) / path.with_suffix("").name
            _decompress(path, dest, display)
            yield dest, {"": path.name}
            return
        root, names = Path(tmp) / path.name, {}
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            rel = p.relative_to(path)
            if compressed(p):
                target = root / rel.with_suffix("")
                _decompress(p, target, f"{display.rstrip('/')}/{rel.as_posix()}")
                names[target.relative_to(root).as_posix()] = rel.as_posix()
            else:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(p.resolve(), root / rel)
        yield root, names


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


def _strip_bom(raw: bytes) -> bytes:
    return raw[len(UTF8_BOM):] if raw.startswith(UTF8_BOM) else raw


# ----------------------------------------------------------------------------- detection


def _first_objects(path: Path, limit: int = 20) -> list[dict]:
    out = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= 200 or len(out) >= limit:
                break
            try:
                obj = json.loads(_strip_bom(line) if i == 0 else line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _first_char(path: Path) -> str:
    with open(path, "rb") as f:
        head = _strip_bom(f.read(4096)).lstrip()
    return head[:1].decode("latin-1")


def _detect_file(path: Path) -> str:
    if path.stat().st_size:
        check_encoding(path, str(path))
    if path.stat().st_size == 0 or not _first_char(path):
        raise UserError(f"{path}: empty file (no rows)")
    if path.suffix.lower() == ".csv":
        return "bigvul"
    if _first_char(path) == "[":
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


# ----------------------------------------------------------------------------- readers


def _excerpt(text: str) -> str:
    """The first characters of a raw row, always encodable (bad bytes shown as escapes)."""
    return text[:EXCERPT_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


def _iter_jsonl(path: Path, source: str) -> Iterator[tuple[int, str, Any, tuple[str, str] | None]]:
    """(line number, raw text, parsed object or None, error) for each non-blank line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1:
                raw = _strip_bom(raw)
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


def _join(v: Any) -> str | None:
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or None
    return str(v)


def _map_common(obj: dict, id_value: Any) -> dict[str, Any]:
    d = {"id": None if id_value is None else str(id_value), "func": obj.get("func", _MISSING),
         "target": obj.get("target", _MISSING)}
    for k in ("project", "commit_id", "cwe", "cve", "pair_id", "date"):
        if k in obj:
            d[k] = _join(obj[k])
    if "date" not in d:
        for k in ("commit_date", "date_committed", "publish_date"):
            if obj.get(k):
                d["date"] = str(obj[k])
                break
    return d


_MISSING = object()


def is_missing(value: Any) -> bool:
    """Whether a mapped field (``Row.data[...]``) is absent from its row or null."""
    return value is _MISSING or value is None


def _read_jsonl(path: Path, source: str, fmt: str, split: str | None, id_prefix: str) -> list[Row]:
    rows: list[Row] = []
    paired = fmt == "primevul" and path.name.endswith("_paired.jsonl")
    for lineno, text, obj, err in _iter_jsonl(path, source):
        if err:
            rows.append(Row(source, lineno, _excerpt(text), error=err, split=split))
            continue
        idx = obj.get("idx") if fmt in ("codexglue", "primevul") else None
        data = _map_common(obj, idx if idx is not None else f"{id_prefix}{lineno}")
        rows.append(Row(source, lineno, _excerpt(text), data=data, split=split))
    if paired:  # consecutive rows: a vulnerable function, then its fix
        good = [r for r in rows if r.data is not None]
        for a, b in zip(good[0::2], good[1::2]):
            if {str(a.data["target"]), str(b.data["target"])} == {"0", "1"}:
                pid = f"{path.stem}:{a.data['id']}"
                a.data.setdefault("pair_id", pid)
                b.data.setdefault("pair_id", pid)
    return rows


def _read_json_array(path: Path, source: str, split: str | None = None) -> list[Row]:
    raw = _strip_bom(path.read_bytes())
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
            rows.append(Row(source, pos, _excerpt(json.dumps(obj)),
                            error=("not_an_object", "array element is not an object")))
            continue
        rows.append(Row(source, pos, _excerpt(json.dumps(obj, ensure_ascii=False)), data=_map_common(obj, pos),
                        split=split))
    return rows


BIGVUL_REQUIRED = ("func_before",)
BIGVUL_LABEL = ("vul", "target")


def _read_bigvul(path: Path, source: str, split: str | None = None) -> list[Row]:
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
                excerpt = _excerpt(json.dumps({k: v for k, v in rec.items() if k in ("func_before", label_col)},
                                              ensure_ascii=False))
                if any(isinstance(v, str) and _SURROGATE.search(v) for v in rec.values()):
                    rows.append(Row(source, line, excerpt, error=("non_utf8", "invalid UTF-8 bytes in a field")))
                    continue
                if None in rec:
                    rows.append(Row(source, line, excerpt,
                                    error=("malformed_csv", f"{len(rec[None])} more fields than the header")))
                    continue
                rid = (rec.get(id_col) if id_col is not None else None) or str(n - 1)
                base = {"project": _join(rec.get("project")), "commit_id": _join(rec.get("commit_id")),
                        "cwe": _join(rec.get("CWE ID")), "cve": _join(rec.get("CVE ID")),
                        "date": _join(rec.get("Publish Date") or rec.get("commit_date") or rec.get("Update Date"))}
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


_SPLIT_WORDS = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}


def _split_of_name(name: str) -> str | None:
    words = re.split(r"[^a-z]+", name.lower())
    hits = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return hits.pop() if len(hits) == 1 else None


def _read_file(path: Path, source: str, fmt: str, split: str | None = None, id_prefix: str = "") -> list[Row]:
    if path.stat().st_size == 0:
        raise UserError(f"{source}: empty file (no rows)")
    check_encoding(path, source)
    if fmt == "bigvul":
        if path.suffix.lower() != ".csv" and _first_char(path) in "[{":
            raise UserError(f"{source}: --format bigvul expects the BigVul CSV file, this is JSON")
        return _read_bigvul(path, source, split)
    if fmt == "devign" or (fmt == "codexglue" and _first_char(path) == "["):
        return _read_json_array(path, source, split)
    return _read_jsonl(path, source, fmt, split, id_prefix)


def _read_index(path: Path, source: str) -> set[str]:
    check_encoding(path, source)
    out = set()
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():  # BOM, CRLF
        if line.strip():
            out.add(line.strip().split()[0])
    return out


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
        return Loaded(fmt, [display], _read_file(path, display, fmt))

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
            for idx in _read_index(index[split], src(index[split])):
                membership.setdefault(idx, split)
        rows = _read_file(data_files[0], src(data_files[0]), fmt)
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
        rows += _read_file(p, src(p), fmt, splits[p] if published else None,
                           id_prefix=f"{p.stem}:" if published else "")
    return Loaded(fmt, [src(p) for p in data_files], rows, published=published)


# ----------------------------------------------------------------------------- validation


def _label(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int) and v in (0, 1):
        return v
    if isinstance(v, float) and v in (0.0, 1.0):
        return int(v)
    if isinstance(v, str) and v.strip() in ("0", "1"):
        return int(v.strip())
    return None


def to_sample(data: dict[str, Any], max_func_bytes: int) -> Sample | tuple[str, str]:
    """A valid Sample, or (reason, detail) for the quarantine."""
    func, target = data.get("func", _MISSING), data.get("target", _MISSING)
    if func is _MISSING or func is None:
        return "missing_field", "func"
    if target is _MISSING or target is None:
        return "missing_field", "target"
    label = _label(target)
    if label is None:
        return "bad_label", f"target={target!r:.40} (expected 0 or 1)"
    if not isinstance(func, str):
        return "bad_type", f"func is a {type(func).__name__}, not a string"
    if not func.strip():
        return "empty_func", "func is empty or whitespace"
    try:
        nbytes = len(func.encode("utf-8"))
    except UnicodeEncodeError:
        return "non_utf8", "func holds unpaired surrogates (invalid Unicode)"
    if nbytes > max_func_bytes:
        return "too_long", f"func is {nbytes} bytes (data.max_func_bytes={max_func_bytes})"
    opt = {}
    for k in ("project", "commit_id", "cwe", "cve", "pair_id", "date"):
        v = data.get(k)
        if v is not None:
            v = str(v)
            if _SURROGATE.search(v):
                return "non_utf8", f"{k} holds invalid Unicode"
            opt[k] = v
    return Sample(id=str(data["id"]), func=func, target=label, **opt)
