"""The graph's vocabularies: edge types, the feature columns of ``x`` and the per-kind feature rows.

What each column and edge type means is specified in :mod:`streamguard.graphs.builder`; this module
holds the tables that implement it: tree-sitter node kinds and their canonical ids, literal
categories, roles, token hashing, and one precomputed feature row per kind, so that the walk over the
parse tree (:mod:`streamguard.graphs.nodes`) looks rows up instead of branching.
"""

from __future__ import annotations

import re
import zlib

import tree_sitter
import tree_sitter_c

LANGUAGE = tree_sitter.Language(tree_sitter_c.language())


def grammar_version() -> str:
    try:
        from importlib.metadata import version

        return version("tree-sitter-c")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


TOKEN_BUCKETS = 8192
SUBTOKEN_BUCKETS = 2048

EDGE_TYPES = ("ast", "next_token", "cfg_next", "cfg_true", "cfg_false", "cfg_jump", "def_use", "call_arg")
NUM_EDGE_TYPES = len(EDGE_TYPES)
AST, NEXT_TOKEN, CFG_NEXT, CFG_TRUE, CFG_FALSE, CFG_JUMP, DEF_USE, CALL_ARG = range(NUM_EDGE_TYPES)

LITERAL_CATEGORIES = ("none", "int_zero", "int_one", "int_small", "int_large", "int_hex", "float",
                      "string_empty", "string", "string_format", "char", "null", "bool")
(LIT_NONE, LIT_ZERO, LIT_ONE, LIT_SMALL, LIT_LARGE, LIT_HEX, LIT_FLOAT, LIT_STR_EMPTY, LIT_STR,
 LIT_STR_FORMAT, LIT_CHAR, LIT_NULL, LIT_BOOL) = range(len(LITERAL_CATEGORIES))

ROLES = ("inner", "leaf", "statement", "def", "use", "def_use", "param", "callee", "missing", "fallback")
(R_INNER, R_LEAF, R_STMT, R_DEF, R_USE, R_DEFUSE, R_PARAM, R_CALLEE, R_MISSING, R_FALLBACK) = range(len(ROLES))

# ----------------------------------------------------------------- node kinds
ERROR_ID = 65535  # tree-sitter's builtin error symbol as seen from Python


def _kind_table() -> tuple[list[int], int, dict[tuple[str, bool], list[int]]]:
    canon: dict[tuple[str, bool], int] = {}
    table, by_name = [], {}
    for i in range(LANGUAGE.node_kind_count):
        key = (LANGUAGE.node_kind_for_id(i), bool(LANGUAGE.node_kind_is_named(i)))
        table.append(canon.setdefault(key, len(canon)))
        by_name.setdefault(key, []).append(i)
    return table, len(canon), by_name


KIND_CANON, _NUM_KINDS, _KIND_IDS = _kind_table()
"""``KIND_CANON[kind_id]``: the ``kind`` column of a node of that tree-sitter kind (aliases share one)."""
KIND_ERROR = _NUM_KINDS
KIND_FALLBACK = _NUM_KINDS + 1

FEATURE_SPEC: dict[str, int] = {
    "kind": _NUM_KINDS + 2,
    "token": TOKEN_BUCKETS,
    "subtoken_first": SUBTOKEN_BUCKETS,
    "subtoken_last": SUBTOKEN_BUCKETS,
    "literal": len(LITERAL_CATEGORIES),
    "role": len(ROLES),
}
"""Vocabulary size of each column of ``x``, in column order."""
NUM_FEATURES = len(FEATURE_SPEC)
ROLE_COLUMN = list(FEATURE_SPEC).index("role")


def kind_ids(*names: str, named: bool = True) -> frozenset[int]:
    """Every tree-sitter kind id of the named (or, ``named=False``, anonymous) kinds ``names``."""
    return frozenset(i for n in names for i in _KIND_IDS.get((n, named), ()))


def kind_id(name: str, named: bool = True) -> int:
    return _KIND_IDS[(name, named)][0]


IDENT = kind_id("identifier")
_HASHED = kind_ids("identifier", "field_identifier", "type_identifier", "primitive_type", "statement_identifier",
                   "number_literal", "string_content", "character", "escape_sequence", "system_lib_string",
                   "preproc_arg")
_WORDY = kind_ids("identifier", "field_identifier", "type_identifier", "statement_identifier", "string_content",
                  "system_lib_string")
_NUMBER = kind_id("number_literal")
_STRINGS = kind_ids("string_literal", "concatenated_string", "raw_string_literal")
_CHAR = kind_ids("char_literal")
_NULL = kind_ids("null")
_BOOL = kind_ids("true", "false")

# ------------------------------------------------------------ token features
_SUBTOKEN_RE = re.compile(rb"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_TOKCACHE: dict[bytes, tuple[int, int, int]] = {}


def token_features(text: bytes, wordy: bool) -> tuple[int, int, int]:
    """``token``, ``subtoken_first``, ``subtoken_last`` of a leaf's text (subtokens only if ``wordy``)."""
    key = text if wordy else b"\0" + text
    f = _TOKCACHE.get(key)
    if f is None:
        full = zlib.crc32(text) % (TOKEN_BUCKETS - 1) + 1
        first = last = 0
        if wordy:
            subs = _SUBTOKEN_RE.findall(text[:128])
            if subs:
                first = zlib.crc32(subs[0].lower()) % (SUBTOKEN_BUCKETS - 1) + 1
                last = zlib.crc32(subs[-1].lower()) % (SUBTOKEN_BUCKETS - 1) + 1
        if len(_TOKCACHE) > 200_000:
            _TOKCACHE.clear()
        f = _TOKCACHE[key] = (full, first, last)
    return f


def number_category(text: bytes) -> int:
    """``literal`` column of a ``number_literal``."""
    t = text.lower().rstrip(b"ul")
    if t.startswith((b"0x", b"0b")):
        return LIT_HEX
    if b"." in t or b"e" in t or t.endswith(b"f"):
        return LIT_FLOAT
    try:
        v = int(t.replace(b"'", b""))
    except ValueError:
        return LIT_LARGE
    return LIT_ZERO if v == 0 else LIT_ONE if v == 1 else LIT_SMALL if v < 256 else LIT_LARGE


def string_category(text: bytes) -> int:
    """``literal`` column of a string literal (its whole source text, prefix and quotes included)."""
    body = text.strip(b"LuU8R")
    if len(body) <= 2:
        return LIT_STR_EMPTY
    return LIT_STR_FORMAT if b"%" in body else LIT_STR


# Per-kind feature rows (kind, token, subtoken_first, subtoken_last, literal, role), indexed by
# tree-sitter kind id: a leaf that is not hashed (LEAF_ROW), an inner node (INNER_ROW; None for a
# string literal, whose literal category needs its text: string_row), and one cache per hashed leaf
# kind (HASHED_ROWS; None for other kinds): text -> row, filled by hashed_row.
ERROR_ROW = (KIND_ERROR, 0, 0, 0, 0, R_INNER)
LEAF_ROW: list = [None] * (ERROR_ID + 1)
INNER_ROW: list = [None] * (ERROR_ID + 1)
HASHED_ROWS: list = [None] * (ERROR_ID + 1)
for _k in range(LANGUAGE.node_kind_count):
    LEAF_ROW[_k] = (KIND_CANON[_k], 0, 0, 0, LIT_NULL if _k in _NULL else LIT_BOOL if _k in _BOOL else 0, R_LEAF)
    INNER_ROW[_k] = None if _k in _STRINGS else \
        (KIND_CANON[_k], 0, 0, 0, LIT_CHAR if _k in _CHAR else LIT_NULL if _k in _NULL else 0, R_INNER)
    if _k in _HASHED:
        HASHED_ROWS[_k] = {}
LEAF_ROW[ERROR_ID] = INNER_ROW[ERROR_ID] = ERROR_ROW
_HASHED_ROWS_LIMIT = 50_000


def hashed_row(k: int, text: bytes, cache: dict) -> tuple[int, int, int, int, int, int]:
    """Row of ``x`` of a hashed leaf of kind ``k`` (role: plain leaf), stored in ``cache``."""
    t, s1, s2 = token_features(text, k in _WORDY)
    f = (KIND_CANON[k], t, s1, s2, number_category(text) if k == _NUMBER else LIT_NONE, R_LEAF)
    if len(cache) > _HASHED_ROWS_LIMIT:
        cache.clear()
    cache[text] = f
    return f


def string_row(k: int, text: bytes) -> tuple[int, int, int, int, int, int]:
    """Row of ``x`` of a string literal node of kind ``k`` with source text ``text``."""
    return (KIND_CANON[k], 0, 0, 0, string_category(text), R_INNER)


def clear_caches() -> None:
    """Forget every cached token feature (benchmarks: time a cold build)."""
    _TOKCACHE.clear()
    for c in HASHED_ROWS:
        if c is not None:
            c.clear()
