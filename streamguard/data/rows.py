"""Rows of a dataset file as the loaders return them, and their validation into a :class:`Sample`.

A :class:`Row` holds its source file, line, raw excerpt, and the mapped Sample fields or the reason they are
bad; :func:`map_common` maps one JSON object onto Sample fields (not yet validated); :func:`to_sample`
validates one row's fields into a Sample or a (reason, detail) for the quarantine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from streamguard.data.samples import Sample

EXCERPT_CHARS = 200
SURROGATE = re.compile("[\ud800-\udfff]")


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


def excerpt_of(text: str) -> str:
    """The first characters of a raw row, always encodable (bad bytes shown as escapes)."""
    return text[:EXCERPT_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


def join_value(v: Any) -> str | None:
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or None
    return str(v)


MISSING = object()


def is_missing(value: Any) -> bool:
    """Whether a mapped field (``Row.data[...]``) is absent from its row or null."""
    return value is MISSING or value is None


def map_common(obj: dict, id_value: Any) -> dict[str, Any]:
    d = {"id": None if id_value is None else str(id_value), "func": obj.get("func", MISSING),
         "target": obj.get("target", MISSING)}
    for k in ("project", "commit_id", "cwe", "cve", "pair_id", "date"):
        if k in obj:
            d[k] = join_value(obj[k])
    if "date" not in d:
        for k in ("commit_date", "date_committed", "publish_date"):
            if obj.get(k):
                d["date"] = str(obj[k])
                break
    return d


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
    func, target = data.get("func", MISSING), data.get("target", MISSING)
    if func is MISSING or func is None:
        return "missing_field", "func"
    if target is MISSING or target is None:
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
            if SURROGATE.search(v):
                return "non_utf8", f"{k} holds invalid Unicode"
            opt[k] = v
    return Sample(id=str(data["id"]), func=func, target=label, **opt)
