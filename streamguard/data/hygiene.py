"""Data hygiene: duplicates, conflicting labels, cross-split leakage, length statistics.

* ``normalise(code)`` drops C comments (``/* */`` and ``//``, not inside string or char
  literals) and collapses all whitespace, so functions differing only in layout or
  comments compare equal.
* ``deduplicate`` removes, in this order: every copy of code (normalised) that occurs
  with both labels — nobody can say which is right; exact duplicates; normalised
  duplicates. The first copy in the given priority order is kept (train before valid
  before test for published splits, so duplicates are removed from the evaluation
  side). Every removal is returned with its reason, for the report and the data card.
* ``strip_comments`` removes comments but keeps the layout (the transformer's text).
* ``leakage`` counts normalised functions shared by two splits (must be 0 after cleaning).
* ``length_stats`` counts C lexical tokens (identifiers, numbers, literals, operators);
  a subword tokenizer yields at least as many, so the share over ``max_tokens`` is a
  lower bound of the share the transformer truncates.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Sequence

import numpy as np

from streamguard.data.samples import Sample

# One alternation: string/char literals are matched (and kept) so that comment markers
# inside them are not taken for comments.
_COMMENT_OR_LITERAL = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
_WS = re.compile(r"\s+")
_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[A-Za-z_]\w*|\d[\w.]*|->|\+\+|--|<<=?|>>=?'
                    r'|[<>=!&|^+\-*/%]=|&&|\|\||\S')


def normalise(code: str) -> str:
    """Code without comments, with whitespace collapsed (and removed around punctuation)."""
    no_comments = _COMMENT_OR_LITERAL.sub(lambda m: " " if m.group(0)[0] == "/" else m.group(0), code)
    return " ".join(_TOKEN.findall(_WS.sub(" ", no_comments)))


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def code_key(code: str) -> str:
    """The key two functions share when they are the same code up to comments and whitespace (what
    ``deduplicate`` and ``leakage`` compare; a bundle lists its training split's keys)."""
    return _key(normalise(code))


def deduplicate(samples: Sequence[Sample], order: Sequence[int] | None = None) -> tuple[list[int], list[dict], dict]:
    """Indices of samples to keep (in input order), the removals, and counts per step."""
    order = list(range(len(samples))) if order is None else list(order)
    norm = [code_key(s.func) for s in samples]
    exact = [_key(s.func) for s in samples]
    labels: dict[str, set[int]] = defaultdict(set)
    for i, s in enumerate(samples):
        labels[norm[i]].add(s.target)
    removed: list[dict] = []
    conflict_groups = {k for k, v in labels.items() if len(v) > 1}
    alive = []
    for i in order:
        if norm[i] in conflict_groups:
            removed.append({"id": samples[i].id, "reason": "conflicting_labels", "target": samples[i].target})
        else:
            alive.append(i)
    first_exact: dict[str, int] = {}
    first_norm: dict[str, int] = {}
    kept = []
    n_exact = n_norm = 0
    for i in alive:
        if exact[i] in first_exact:
            n_exact += 1
            removed.append({"id": samples[i].id, "reason": "exact_duplicate",
                            "duplicate_of": samples[first_exact[exact[i]]].id})
        elif norm[i] in first_norm:
            n_norm += 1
            removed.append({"id": samples[i].id, "reason": "normalised_duplicate",
                            "duplicate_of": samples[first_norm[norm[i]]].id})
        else:
            first_exact[exact[i]] = i
            first_norm[norm[i]] = i
            kept.append(i)
    stats = {
        "conflicting_label_groups": len(conflict_groups),
        "conflicting_label_samples": len(samples) - len(alive),
        "exact_duplicates": n_exact,
        "normalised_duplicates": n_norm,
        "kept": len(kept),
    }
    return sorted(kept), removed, stats


def leakage(splits: dict[str, Sequence[Sample]]) -> dict[str, int]:
    """Number of normalised functions shared by each pair of splits."""
    keys = {name: {code_key(s.func) for s in ss} for name, ss in splits.items()}
    names = list(splits)
    return {f"{a}/{b}": len(keys[a] & keys[b]) for i, a in enumerate(names) for b in names[i + 1:]}


_MARK = "\ue000"  # a private-use character stands for a removed comment while the layout is tidied
_AROUND_MARK = re.compile(r"[ \t]*" + _MARK + r"(?:[ \t]*" + _MARK + r")*[ \t]*")


def strip_comments(code: str) -> str:
    """``code`` without its C comments (not inside string or char literals), its layout otherwise kept: a comment
    and the blanks around it become one space, a line left blank by removing comments is dropped, and a line
    ending in a comment loses its trailing blanks. What the transformer reads (``transformer.strip_comments``):
    two functions that differ only in comments are then the same input, as they are to the C lexer and to the
    graph builder -- a fix that only adds a comment, or a comment naming the CVE, cannot be learned from."""
    marked = _COMMENT_OR_LITERAL.sub(lambda m: _MARK if m.group(0)[0] == "/" else m.group(0), code)
    if _MARK not in marked:
        return code
    lines = []
    for line in marked.split("\n"):
        if _MARK not in line:
            lines.append(line)
        elif line.replace(_MARK, "").strip():
            indent = line[:len(line) - len(line.lstrip(" \t"))]
            lines.append(indent + _AROUND_MARK.sub(" ", line[len(indent):]).strip())
    return "\n".join(lines)


def tokens(code: str) -> list[str]:
    """The C lexical tokens of ``code``, comments dropped."""
    return _TOKEN.findall(_COMMENT_OR_LITERAL.sub(lambda m: " " if m.group(0)[0] == "/" else m.group(0), code))


def count_tokens(code: str) -> int:
    return len(tokens(code))


def length_stats(samples: Sequence[Sample], max_tokens: int, counts: Sequence[int] | None = None) -> dict:
    """Distribution of C-token counts and the share of functions longer than ``max_tokens`` (``counts``: the
    samples' token counts when the caller has them)."""
    if not samples:
        return {"n": 0, "max_tokens": max_tokens, "share_truncated": 0.0}
    n = np.array(list(counts) if counts is not None else [count_tokens(s.func) for s in samples])
    p = np.percentile(n, [50, 90, 95, 99])
    return {
        "n": int(len(n)), "unit": "C lexical tokens", "max_tokens": int(max_tokens),
        "mean": round(float(n.mean()), 1), "p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]),
        "p99": float(p[3]), "min": int(n.min()), "max": int(n.max()),
        "n_truncated": int((n > max_tokens).sum()), "share_truncated": round(float((n > max_tokens).mean()), 4),
    }
