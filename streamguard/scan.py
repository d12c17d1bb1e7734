"""``streamguard scan``: score every C function of a code base with a bundle; table, JSON and SARIF 2.1.0.

Files: the ``.c`` and ``.h`` files under each PATH (directories are walked in
name order; hidden directories such as ``.git`` are not entered), or the files
named. A file is skipped, and counted by reason, when it is ``unreadable``,
``too_large`` (over ``max_file_bytes``, default :data:`MAX_FILE_BYTES` = 1 MiB:
generated tables and amalgamations, whose functions are not what a reviewer
reads), ``empty`` (nothing but whitespace), ``binary`` (a NUL byte in its first
8 KiB) or ``not_utf8``. No C file at all is an error (exit 2).

Functions: every ``function_definition`` of the tree-sitter parse of a file
(the graph builder's own tree-sitter-c parser), also inside ``#if`` blocks and
``extern "C"``; each is scored by the bundle exactly as ``predict`` scores a
function (graphs built on the fly by the bundle's graph builder). With
``changed_since`` (a git revision; PATHs in a git work tree) only functions whose
lines a change since that revision touched are scored: lines changed in
``git diff REV`` (committed, staged or not) and every function of an untracked
file.

Outputs: the ranked table (``format_table``), ``scan.json`` (every function with
its scores, the skipped files, the counts) and ``scan.sarif`` (one result per
function at or above the threshold: the bundle's head's validation-tuned one,
unless given; :mod:`streamguard.sarif`).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from streamguard import __version__
from streamguard.bundle import DEFAULT_BATCH, Bundle, load_bundle
from streamguard.errors import UserError
from streamguard.jsonio import write_json_atomic

log = logging.getLogger(__name__)

C_SUFFIXES = (".c", ".h")
MAX_FILE_BYTES = 1 << 20
"""Files larger than this (1 MiB) are skipped as ``too_large`` unless ``--max-file-bytes`` says otherwise."""
BINARY_PROBE = 8192
SKIP_REASONS = ("unreadable", "too_large", "empty", "binary", "not_utf8")


@dataclass
class CFunction:
    """One function definition of a file (lines 1-based, inclusive)."""

    path: Path
    uri: str
    """The file as reports name it: relative to the scan root (POSIX), else an absolute ``file://`` URI."""
    name: str
    start_line: int
    end_line: int
    code: str


def c_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The C files named or under ``paths``, each once, in walk order; none at all is a UserError."""
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            raise UserError(f"{raw}: no such file or directory")
        if p.is_dir():
            found = []
            for d, dirs, files in os.walk(p):
                dirs[:] = sorted(x for x in dirs if not x.startswith("."))
                found += [Path(d) / f for f in sorted(files) if f.endswith(C_SUFFIXES)]
        else:
            found = [p]
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    if not out:
        raise UserError(f"{', '.join(map(str, paths))}: no C files (.c or .h) to scan")
    return out


def read_source(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes | None, str | None]:
    """``(bytes, None)`` of a scannable UTF-8 C file, or ``(None, reason)`` (one of :data:`SKIP_REASONS`)."""
    try:
        if path.stat().st_size > max_bytes:
            return None, "too_large"
        data = path.read_bytes()
    except OSError:
        return None, "unreadable"
    if len(data) > max_bytes:
        return None, "too_large"
    if not data.strip():
        return None, "empty"
    if b"\0" in data[:BINARY_PROBE]:
        return None, "binary"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not_utf8"
    return data, None


def _name(node) -> str:
    """The declared name of a ``function_definition`` (through pointer/attributed/parenthesised declarators)."""
    d = node.child_by_field_name("declarator")
    while d is not None and d.type != "function_declarator":
        d = d.child_by_field_name("declarator")
    if d is not None:
        inner = d.child_by_field_name("declarator")
        while inner is not None and inner.type not in ("identifier", "field_identifier"):
            nxt = inner.child_by_field_name("declarator")
            if nxt is None:
                break
            inner = nxt
        if inner is not None and inner.text:
            return inner.text.decode("utf-8", "replace")
    return "<unnamed>"


def extract_functions(src: bytes) -> list[tuple[str, int, int, int, int]]:
    """``(name, start_line, end_line, start_byte, end_byte)`` of every function definition of a C source."""
    from streamguard.graphs.builder import parse

    out = []
    stack = [parse(src).root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            end_row, end_col = node.end_point
            end_line = end_row + 1 if end_col > 0 or end_row == node.start_point[0] else end_row
            out.append((_name(node), node.start_point[0] + 1, end_line, node.start_byte, node.end_byte))
            continue
        stack.extend(reversed(node.children))
    return out


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def _git(top: Path | str, *args: str) -> str:
    try:
        res = subprocess.run(["git", "-C", str(top), "-c", "core.quotePath=false", *args], capture_output=True,
                             text=True, errors="replace", check=False)
    except FileNotFoundError:
        raise UserError("--changed-since: git is not installed") from None
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1]
        raise UserError(f"--changed-since: {msg}")
    return res.stdout


def changed_lines(files: Sequence[Path], rev: str) -> dict[Path, list[tuple[int, int]] | None]:
    """Per file (resolved path) changed since ``rev``: its changed line ranges (new side), or None when the
    whole file is new (untracked). Files without changes are absent."""
    start = files[0].resolve()
    top = Path(_git(start if start.is_dir() else start.parent, "rev-parse", "--show-toplevel").strip())
    try:
        _git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except UserError:
        raise UserError(f"--changed-since {rev!r}: not a commit of the git work tree {top}") from None
    out: dict[Path, list[tuple[int, int]] | None] = {}
    current: Path | None = None
    for line in _git(top, "diff", "--unified=0", "--no-color", "--no-ext-diff", "--no-renames", rev, "--").splitlines():
        if line.startswith("+++ "):
            target = line[4:]
            current = (top / target[2:]).resolve() if target.startswith("b/") else None
        elif line.startswith("@@") and current is not None:
            m = _HUNK.match(line)
            if m:
                first, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
                # a pure deletion (+c,0) touches the line before it
                span = (first, first + count - 1) if count else (max(first, 1), max(first, 1))
                ranges = out.setdefault(current, [])
                if ranges is not None:
                    ranges.append(span)
    for name in _git(top, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        if name:
            out[(top / name).resolve()] = None
    return out


def _uri(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (a symlink named as itself, not as its target), else its file URI."""
    for p, r in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return Path(os.path.abspath(path)).as_uri()


def scan(paths: Sequence[str | os.PathLike], bundle: str | Bundle, out_dir: str | os.PathLike | None = None, *,
         changed_since: str | None = None, threshold: float | None = None, max_file_bytes: int = MAX_FILE_BYTES,
         root: str | os.PathLike | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = True,
         store_settings: Any = None) -> dict[str, Any]:
    """Scan ``paths`` with ``bundle``; write ``scan.json`` and ``scan.sarif`` into ``out_dir`` (if given).

    Returns the scan: ``functions`` ranked by score (each with ``uri``, ``name``, lines, ``score``,
    ``scores`` per family, ``flagged``), ``files`` counts and ``skipped`` files, ``threshold``, outputs.
    ``root``: what file locations are relative to (default: the current directory).
    """
    from streamguard import sarif
    from streamguard.data.hygiene import code_key
    from streamguard.data.samples import Sample

    t0 = time.perf_counter()
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, store_settings)
    thr = float(b.thresholds[b.head] if threshold is None else threshold)
    base = Path(os.path.abspath(root or os.getcwd()))
    files = c_files(paths)
    changed = changed_lines(files, changed_since) if changed_since else None
    functions: list[CFunction] = []
    skipped: list[dict[str, str]] = []
    counts = Counter()
    for f in files:
        key = f.resolve()
        if changed is not None and key not in changed:
            counts["unchanged"] += 1
            continue
        src, reason = read_source(f, max_file_bytes)
        if reason is not None:
            counts[reason] += 1
            skipped.append({"uri": _uri(f, base), "reason": reason})
            continue
        counts["scanned"] += 1
        uri = _uri(f, base)
        found = extract_functions(src)
        if not found:
            counts["without_functions"] += 1
        ranges = changed.get(key) if changed is not None else None
        for name, start, end, b0, b1 in found:
            if ranges is not None and not any(a <= end and start <= z for a, z in ranges):
                continue
            functions.append(CFunction(f, uri, name, start, end, src[b0:b1].decode("utf-8")))
    samples = [Sample(id=f"{fn.uri}:{fn.start_line}", func=fn.code, target=0) for fn in functions]
    scores = b.score(samples, batch_size=batch_size, progress=progress, desc="scan") if samples else {}
    rows = []
    for i, fn in enumerate(functions):
        s = {fam: float(v[i]) for fam, v in scores.items()}
        rows.append({"uri": fn.uri, "name": fn.name, "start_line": fn.start_line, "end_line": fn.end_line,
                     "score": s[b.head], "scores": s, "flagged": s[b.head] >= thr,
                     "fingerprint": sarif.fingerprint(fn.uri, fn.name, code_key(fn.code))})
    rows.sort(key=lambda r: (-r["score"], r["uri"], r["start_line"]))
    result = {
        "tool": {"name": "StreamGuard", "version": __version__},
        "bundle": {"source": b.source, "head": b.head, "seed": b.card.get("seed"),
                   "data_fingerprint": b.card.get("data_fingerprint"), "rule": b.rule["id"]},
        "paths": [str(p) for p in paths], "root": str(base), "changed_since": changed_since,
        "threshold": thr,
        "files": {"found": len(files), "scanned": counts["scanned"],
                  "skipped": {r: counts[r] for r in SKIP_REASONS}, "unchanged": counts["unchanged"],
                  "without_functions": counts["without_functions"]},
        "skipped": skipped,
        "functions_scored": len(rows),
        "flagged": sum(r["flagged"] for r in rows),
        "functions": rows,
        "seconds": None,
        "outputs": {},
    }
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["outputs"] = {"json": str(out / "scan.json"), "sarif": str(out / "scan.sarif")}
        write_json_atomic(out / "scan.json", result)
        sarif_log = sarif.log([r for r in rows if r["flagged"]], rule=b.rule, tool_version=__version__, root=base,
                              threshold=thr, skipped=skipped,
                              properties={"bundle": result["bundle"], "files": result["files"],
                                          "functionsScored": len(rows)})
        write_json_atomic(out / "scan.sarif", sarif_log)
    log.info("scan: %d functions in %d files, %d at or above %.3f", len(rows), counts["scanned"], result["flagged"],
             thr)
    return result


def format_table(result: dict[str, Any], top: int = 20) -> str:
    """The ranked table (score, file:line, function), the ``top`` highest (0: all); ``*`` marks a finding."""
    rows = result["functions"] if top <= 0 else result["functions"][:top]
    if not rows:
        return "no functions scored"
    locs = [f"{r['uri']}:{r['start_line']}" for r in rows]
    w = max(len("location"), *(len(x) for x in locs))
    lines = [f"{'rank':>4}  {'score':>6}  {'location':<{w}}  function"]
    for i, (r, loc) in enumerate(zip(rows, locs), 1):
        lines.append(f"{i:>4}  {r['score']:>6.3f}{'*' if r['flagged'] else ' '} {loc:<{w}}  {r['name']}")
    if len(rows) < len(result["functions"]):
        lines.append(f"      ... {len(result['functions']) - len(rows)} more in scan.json")
    return "\n".join(lines)


def summary_line(result: dict[str, Any]) -> str:
    """One line: what was scanned, skipped and found, and where the SARIF file is."""
    f = result["files"]
    skipped = ", ".join(f"{n} {r}" for r, n in f["skipped"].items() if n)
    parts = [f"scanned {result['functions_scored']} functions in {f['scanned']} files"
             + (f" ({sum(f['skipped'].values())} skipped: {skipped})" if skipped else ""),
             f"{result['flagged']} at or above threshold {result['threshold']:.3f}"]
    if result["outputs"]:
        parts.append(f"SARIF: {result['outputs']['sarif']}")
    return "; ".join(parts)
