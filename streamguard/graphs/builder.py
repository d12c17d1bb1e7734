"""C function -> program graph (AST + token sequence + control flow + data flow), with tree-sitter.

One pass over the tree-sitter parse tree builds every part of the graph; no
Joern, no compiler, no preprocessing. The result is a PyG ``Data``
(:func:`build_graph`) or, inside the pipeline stage, the same graph as compact
arrays (:func:`build_arrays`) that are packed into shards without ever making a
per-function tensor.

Nodes
-----
Every tree-sitter node of the function is a graph node, in source pre-order,
except these, which carry no information beyond their parent's kind:
punctuation ``( ) { } [ ] ; , :``, quote tokens, line ends of preprocessor
lines, comments, and the keywords implied by their statement
(``if else while do for switch case default return break continue goto``).
Node 0 is the root (``translation_unit``); a function is its child
``function_definition``.

Feature columns of ``x`` (``[num_nodes, 6]`` categorical ids: int64 from :func:`build_graph`,
int16 in shards and in graphs loaded from them, int64 again in a ``gnn_collate`` batch; the
vocabulary size of each column is :data:`FEATURE_SPEC`, in this order):

``kind``
    The tree-sitter node kind (named kinds such as ``if_statement`` and
    anonymous tokens such as ``<=`` or ``sizeof``), canonicalised so aliases of
    one kind share an id; plus ``ERROR`` (:data:`KIND_ERROR`) and the fallback
    kind of a failed build (:data:`KIND_FALLBACK`). Depends on the tree-sitter-c
    grammar version, which is part of :data:`BUILDER_VERSION`.
``token``
    For identifier-like and literal leaves (``identifier``, ``field_identifier``,
    ``type_identifier``, ``primitive_type``, ``statement_identifier``,
    ``number_literal``, ``string_content``, ``character``, ``escape_sequence``,
    ``system_lib_string``, ``preproc_arg``): the whole token text hashed with
    ``zlib.crc32`` into ``1 .. TOKEN_BUCKETS-1`` (stable across processes and
    machines, unlike Python's salted ``hash()``); 0 for every other node.
``subtoken_first`` / ``subtoken_last``
    For identifiers, type/field names and string contents: the first and last
    subtoken (split at ``_``, camelCase and digit boundaries, lower-cased),
    crc32-hashed into ``1 .. SUBTOKEN_BUCKETS-1``; 0 otherwise. ``buf_len`` ->
    ``buf``, ``len``; ``memcpy`` -> ``memcpy``, ``memcpy``.
``literal``
    Literal category (:data:`LITERAL_CATEGORIES`): none, integer 0, 1, 2..255,
    larger, hex, float, empty string, string, format string (contains ``%``),
    char, ``NULL``/``nullptr``, ``true``/``false``.
``role``
    (:data:`ROLES`) inner node, other leaf, control-flow (statement) node,
    variable definition (write), variable use (read), read+write (``x++``,
    ``x += 1``), parameter, callee name, MISSING token inserted by tree-sitter's
    error recovery, fallback node.

Edge types (``edge_type``, :data:`EDGE_TYPES`; ``edge_index`` is ``[2, E]``
source -> target)
------------------------------------------------------------------------
0 ``ast``        parent -> child.
1 ``next_token`` each kept leaf -> the next kept leaf in source order.
2 ``cfg_next``   control flow: sequence, fall-through into the next ``case``,
                 the end of a loop body back to its condition (or to a ``for``'s
                 update), update -> condition, label -> labelled statement.
3 ``cfg_true``   condition holds: ``if`` -> then-branch, loop condition -> body,
                 ``do ... while`` condition -> body, ``switch`` -> each
                 ``case``/``default``, ``#if``/``#ifdef`` -> its block.
4 ``cfg_false``  condition fails: ``if`` -> else-branch (or the statement after
                 the ``if``), loop condition -> after the loop, ``switch`` without
                 ``default`` -> after the switch, ``#if`` -> ``#else`` block.
5 ``cfg_jump``   ``break`` -> after its loop/switch, ``continue`` -> the loop
                 condition (``for``: its update), ``goto L`` -> ``L:``.
6 ``def_use``    data flow: the identifier node that writes a variable -> each
                 identifier node that reads it and that this write may reach
                 (reaching definitions over the control-flow graph, so across
                 branches and loop iterations).
7 ``call_arg``   each argument of a call -> the callee node.

Control flow
------------
Control-flow nodes are statements: ``expression_statement``, ``declaration``,
``return``/``break``/``continue``/``goto``, labels and ``case`` labels; an
``if``/``while``/``switch`` node stands for evaluating its condition, a ``do``
node for its trailing condition, a ``for`` node for its condition (its
initialiser and update are control-flow nodes of their own); the
``function_definition`` node is the entry (parameters are defined there).
``{ ... }`` blocks are not control-flow nodes: flow goes straight to their first
statement. ``return`` has no successor (there is no exit node). ``#if``/
``#ifdef``/``#elif`` inside a body branch like ``if`` (both configurations are
possible). ``ERROR`` nodes in statement position are control-flow nodes whose
statement-looking children continue the flow in sequence.

Data flow
---------
Variables are identifiers, by name within a function (no scope-aware
shadowing). Definitions: parameters (also K&R style), declarators (``int x;``
included: it defines "uninitialised", so a read that it reaches shows up),
plain-identifier left sides of ``=`` and of compound assignments (also a read),
``++``/``--`` operands (read and write). ``p->f = v``, ``*p = v`` and ``a[i] = v``
read ``p``/``a``/``i`` and define nothing; ``&x`` is a read. Within one statement,
right sides are read before left sides are written.

Size cap and trimming
---------------------
At most ``max_nodes`` nodes (default :data:`DEFAULT_MAX_NODES`, the pipeline passes
``GNNConfig.max_nodes``) are kept: the first ``max_nodes`` nodes in source
pre-order, i.e. the signature and the beginning of the body. Everything after
that point is dropped with its edges (a loop whose end is cut loses its back
edge). The graph is then marked ``truncated=True``.

Robustness
----------
Unexpanded macros, K&R definitions, GNU extensions, ``#if`` blocks and
truncated or unbalanced code are parsed by tree-sitter's error recovery;
``error_share`` records the share of ``ERROR`` and ``MISSING`` nodes among the
parse-tree nodes visited. Bytes need not be UTF-8 (``str`` input is encoded as
UTF-8 with ``surrogatepass``). :class:`GraphBuildError` is raised only when there
is no graph at all (empty input, only whitespace/comments); the pipeline stage
then stores a one-node fallback graph marked ``failed=True`` and reports why.
"""

from __future__ import annotations

import contextlib
import re
import sys
import zlib
from array import array
from typing import NamedTuple

import tree_sitter
import tree_sitter_c

_REVISION = "1"


def _grammar_version() -> str:
    try:
        from importlib.metadata import version

        return version("tree-sitter-c")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


LANGUAGE = tree_sitter.Language(tree_sitter_c.language())
BUILDER_VERSION = f"{_REVISION}+tree-sitter-c-{_grammar_version()}"
"""Changes whenever graphs would change: our revision plus the grammar version."""

DEFAULT_MAX_NODES = 4000
_RECURSION_LIMIT = 20_000
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
_ERROR_ID = 65535  # tree-sitter's builtin error symbol as seen from Python


def _kind_table() -> tuple[list[int], int, dict[tuple[str, bool], list[int]]]:
    canon: dict[tuple[str, bool], int] = {}
    table, by_name = [], {}
    for i in range(LANGUAGE.node_kind_count):
        key = (LANGUAGE.node_kind_for_id(i), bool(LANGUAGE.node_kind_is_named(i)))
        table.append(canon.setdefault(key, len(canon)))
        by_name.setdefault(key, []).append(i)
    return table, len(canon), by_name


_KIND_CANON, _NUM_KINDS, _KIND_IDS = _kind_table()
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


def _ids(*names: str, named: bool = True) -> frozenset[int]:
    return frozenset(i for n in names for i in _KIND_IDS.get((n, named), ()))


def _id(name: str, named: bool = True) -> int:
    return _KIND_IDS[(name, named)][0]


_SKIP = (_ids("(", ")", "{", "}", "[", "]", ";", ",", ":", '"', "'", "\n", "if", "else", "while", "do", "for",
              "switch", "case", "default", "return", "break", "continue", "goto", named=False)
         | _ids("comment"))
_IDENT = _id("identifier")
_HASHED = _ids("identifier", "field_identifier", "type_identifier", "primitive_type", "statement_identifier",
               "number_literal", "string_content", "character", "escape_sequence", "system_lib_string",
               "preproc_arg")
_WORDY = _ids("identifier", "field_identifier", "type_identifier", "statement_identifier", "string_content",
              "system_lib_string")
_NUMBER = _id("number_literal")
_STRINGS = _ids("string_literal", "concatenated_string", "raw_string_literal")
_CHAR = _ids("char_literal")
_NULL = _ids("null")
_BOOL = _ids("true", "false")
_COLON = _ids(":", named=False)
_DEFAULT_KW = _ids("default", named=False)
_ASSIGN_PLAIN = _ids("=", named=False)
_PASSTHRU = _ids("parenthesized_expression", "pointer_declarator", "parenthesized_declarator",
                 "attributed_declarator", "parameter_declaration", "parameter_list", "type_qualifier")
_PREPROC_ALT = _ids("preproc_else", "preproc_elif", "preproc_elifdef")
_COND = _ids("parenthesized_expression", "condition_clause")

# modes of an identifier occurrence (bit flags)
USE, DEF, PARAM = 1, 2, 4
_ROLE_OF_MODE = {USE: R_USE, DEF: R_DEF, USE | DEF: R_DEFUSE, DEF | PARAM: R_PARAM, USE | DEF | PARAM: R_PARAM}

# ------------------------------------------------------------ token features
_SUBTOKEN_RE = re.compile(rb"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_TOKCACHE: dict[bytes, tuple[int, int, int]] = {}


def _token_features(text: bytes, wordy: bool) -> tuple[int, int, int]:
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


def _number_category(text: bytes) -> int:
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


def _string_category(text: bytes) -> int:
    body = text.strip(b"LuU8R")
    if len(body) <= 2:
        return LIT_STR_EMPTY
    return LIT_STR_FORMAT if b"%" in body else LIT_STR


# Per-kind feature rows, indexed by tree-sitter kind id (the hot path of the build looks them up
# instead of branching): a leaf that is not hashed, an inner node (None: a string literal, whose
# literal category needs its text), and one cache per hashed leaf kind: text -> feature row.
_ERROR_FEAT = (KIND_ERROR, 0, 0, 0, 0, R_INNER)
_LEAF_FEAT: list = [None] * (_ERROR_ID + 1)
_INNER_FEAT: list = [None] * (_ERROR_ID + 1)
_HCACHE: list = [None] * (_ERROR_ID + 1)
for _k in range(LANGUAGE.node_kind_count):
    _LEAF_FEAT[_k] = (_KIND_CANON[_k], 0, 0, 0, LIT_NULL if _k in _NULL else LIT_BOOL if _k in _BOOL else 0, R_LEAF)
    _INNER_FEAT[_k] = None if _k in _STRINGS else \
        (_KIND_CANON[_k], 0, 0, 0, LIT_CHAR if _k in _CHAR else LIT_NULL if _k in _NULL else 0, R_INNER)
    if _k in _HASHED:
        _HCACHE[_k] = {}
_LEAF_FEAT[_ERROR_ID] = _INNER_FEAT[_ERROR_ID] = _ERROR_FEAT
_HCACHE_LIMIT = 50_000


def _hashed_features(k: int, text: bytes, cache: dict) -> tuple[int, int, int, int, int, int]:
    """Row of ``x`` of a hashed leaf of kind ``k`` (role: plain leaf), stored in ``cache``."""
    t, s1, s2 = _token_features(text, k in _WORDY)
    f = (_KIND_CANON[k], t, s1, s2, _number_category(text) if k == _NUMBER else LIT_NONE, R_LEAF)
    if len(cache) > _HCACHE_LIMIT:
        cache.clear()
    cache[text] = f
    return f


def clear_caches() -> None:
    """Forget every cached token feature (benchmarks: time a cold build)."""
    _TOKCACHE.clear()
    for c in _HCACHE:
        if c is not None:
            c.clear()


# ------------------------------------------------------------------- errors
class GraphBuildError(Exception):
    """The input gives no graph at all; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Cap(Exception):
    pass


class GraphArrays(NamedTuple):
    """A graph as flat arrays (what workers send and shards store)."""

    num_nodes: int
    x: array  # int16, num_nodes * NUM_FEATURES, row-major
    src: array  # int32, E
    dst: array  # int32, E
    etype: array  # int8, E
    error_share: float
    truncated: bool


# ------------------------------------------------------------------ builder
_PARSER: tree_sitter.Parser | None = None


def _parser() -> tree_sitter.Parser:
    global _PARSER
    if _PARSER is None:
        _PARSER = tree_sitter.Parser(LANGUAGE)
    return _PARSER


def parse(code: bytes) -> tree_sitter.Tree:
    """Bare tree-sitter parse (what the benchmark compares the build against)."""
    return _parser().parse(code)


def _to_bytes(code) -> bytes:
    if isinstance(code, bytes):
        return code
    if isinstance(code, (bytearray, memoryview)):
        return bytes(code)
    if isinstance(code, str):
        return code.encode("utf-8", "surrogatepass")
    raise GraphBuildError(f"source is {type(code).__name__}, not str or bytes")


class _Builder:
    def __init__(self, src: bytes, max_nodes: int, has_error: bool, trace: list | None = None):
        self.src = src
        self.trace = trace
        self.max_nodes = max_nodes
        self.has_error = has_error
        self.feat: list[int] = []  # the rows of x, flat: kind, token, sub1, sub2, literal, role per node
        self.parent: list[int] = []  # one per node: its length is the node count
        self.leaves: list[int] = []
        self.cfg: list[int] = []  # flat (src, dst, type) triples
        self.calls: list[int] = []  # flat (src, dst) pairs
        self.events: dict[int, list] = {}  # cfg node -> [(name, node, mode)]
        self.nerr = 0
        self.nskip = 0
        self.labels: dict[bytes, int] = {}
        self.gotos: list[tuple[int, bytes]] = []
        self.breaks: list[list] = []
        self.conts: list[int] = []
        self.switches: list[list] = []
        self.stmt_handlers = _STMT_HANDLERS
        self.stmt_kinds = _STMT_KINDS
        self.expr_handlers = _EXPR_HANDLERS

    # ---------------------------------------------------------------- nodes
    def add(self, node, k: int, parent: int, leaf: bool) -> int:
        parents = self.parent
        idx = len(parents)
        if idx >= self.max_nodes:
            raise _Cap
        parents.append(parent)
        if self.trace is not None:
            self.trace.append(node)
        feat = self.feat
        if k == _ERROR_ID:
            self.nerr += 1
            feat += _ERROR_FEAT
            return idx
        if leaf:
            self.leaves.append(idx)
            cache = _HCACHE[k]
            if cache is None:
                feat += _LEAF_FEAT[k]
            else:
                text = self.src[node.start_byte:node.end_byte]
                f = cache.get(text)
                feat += f if f is not None else _hashed_features(k, text, cache)
            if self.has_error and node.is_missing:
                self.nerr += 1
                feat[-1] = R_MISSING
        else:
            f = _INNER_FEAT[k]
            feat += f if f is not None else \
                (_KIND_CANON[k], 0, 0, 0, _string_category(self.src[node.start_byte:node.end_byte]), R_INNER)
        return idx

    def skip(self, node) -> None:
        self.nskip += 1
        if self.has_error and node.is_missing:
            self.nerr += 1

    def connect(self, preds, dst: int) -> None:
        cfg = self.cfg
        for p, t in preds:
            cfg += (p, dst, t)

    # ---------------------------------------------------------- expressions
    def expr(self, node, parent: int, ev: list, mode: int) -> int:
        k = node.kind_id
        if k in _SKIP:
            self.nskip += 1
            if self.has_error and node.is_missing:
                self.nerr += 1
            return -1
        return self._ex(node, k, parent, ev, mode)

    def _ex(self, node, k: int, parent: int, ev: list, mode: int) -> int:
        """``expr`` for a node already known not to be skipped (kind ``k``): the hot path of the build.

        Same graph as ``add`` + the generic recursion, with the per-kind work looked up in tables."""
        parents = self.parent
        idx = len(parents)
        if idx >= self.max_nodes:
            raise _Cap
        parents.append(parent)
        if self.trace is not None:
            self.trace.append(node)
        children = node.children
        feat = self.feat
        if k == _ERROR_ID:
            self.nerr += 1
            feat += _ERROR_FEAT
            if not children:
                return idx
        elif not children:  # leaf
            self.leaves.append(idx)
            cache = _HCACHE[k]
            if cache is None:
                feat += _LEAF_FEAT[k]
                if self.has_error and node.is_missing:
                    self.nerr += 1
                    feat[-1] = R_MISSING
                return idx
            text = self.src[node.start_byte:node.end_byte]
            f = cache.get(text)
            feat += f if f is not None else _hashed_features(k, text, cache)
            if self.has_error and node.is_missing:
                self.nerr += 1
                feat[-1] = R_MISSING
            if k == _IDENT and mode:
                ev.append((text, idx, mode))
                feat[-1] = _ROLE_OF_MODE[mode]
            return idx
        else:
            f = _INNER_FEAT[k]
            feat += f if f is not None else \
                (_KIND_CANON[k], 0, 0, 0, _string_category(self.src[node.start_byte:node.end_byte]), R_INNER)
        h = _EXPR_HANDLERS.get(k)
        if h is not None:
            h(self, node, children, idx, ev, mode)
        else:
            self._exprs(children, idx, ev, USE if mode & DEF and k not in _PASSTHRU else mode)
        return idx

    def _exprs(self, children, parent: int, ev: list, mode: int) -> None:
        """``expr`` over a list of siblings (skipped tokens counted inline)."""
        ex = self._ex
        for ch in children:
            k = ch.kind_id
            if k in _SKIP:
                self.nskip += 1
                if self.has_error and ch.is_missing:
                    self.nerr += 1
            else:
                ex(ch, k, parent, ev, mode)

    def _assign(self, node, children, idx, ev, mode):
        if len(children) < 3:
            self._exprs(children, idx, ev, USE)
            return
        left_ev: list = []
        lmode = DEF if children[1].kind_id in _ASSIGN_PLAIN else DEF | USE
        self.expr(children[0], idx, left_ev, lmode)
        self._exprs(children[1:], idx, ev, USE)
        ev += left_ev

    def _init_decl(self, node, children, idx, ev, mode):
        left_ev: list = []
        self.expr(children[0], idx, left_ev, mode if mode & DEF else DEF)
        self._exprs(children[1:], idx, ev, USE)
        ev += left_ev

    def _update(self, node, children, idx, ev, mode):
        self._exprs(children, idx, ev, DEF | USE)

    def _declaration(self, node, children, idx, ev, mode):
        self._exprs(children, idx, ev, mode if mode & DEF else DEF)

    def _array_decl(self, node, children, idx, ev, mode):
        first = True
        for ch in children:
            if first and ch.is_named:
                self.expr(ch, idx, ev, mode)
                first = False
            else:
                self.expr(ch, idx, ev, USE if mode else 0)

    def _fdecl(self, node, children, idx, ev, mode):
        for ch in children:
            k = ch.kind_id
            if k == _IDENT:
                self.expr(ch, idx, ev, 0)
            elif ch.type == "parameter_list":
                self.expr(ch, idx, ev, DEF | PARAM)
            else:
                self.expr(ch, idx, ev, mode)

    def _call(self, node, children, idx, ev, mode):
        callee = -1
        for ch in children:
            if callee < 0:
                if ch.kind_id == _IDENT:
                    callee = self.add(ch, _IDENT, idx, True)
                    self.feat[callee * NUM_FEATURES + 5] = R_CALLEE
                else:
                    callee = self.expr(ch, idx, ev, USE)
            elif ch.type == "argument_list":
                aidx = self.add(ch, ch.kind_id, idx, False)
                calls = self.calls
                for a in ch.children:
                    j = self.expr(a, aidx, ev, USE)
                    if j >= 0:
                        calls += (j, callee)
            else:
                self.expr(ch, idx, ev, USE)

    # ----------------------------------------------------------- statements
    def stmt(self, node, parent: int, preds: list) -> list:
        k = node.kind_id
        if k in _SKIP:
            self.skip(node)
            return preds
        h = self.stmt_handlers.get(k)
        if h is None:
            return self._simple(node, k, parent, preds)
        return h(self, node, k, parent, preds)

    def _cfg_node(self, node, k, parent, preds) -> tuple[int, list]:
        idx = self.add(node, k, parent, False)
        self.feat[idx * NUM_FEATURES + 5] = R_STMT
        for p, t in preds:
            self.cfg += (p, idx, t)
        ev: list = []
        self.events[idx] = ev
        return idx, ev

    def _simple(self, node, k, parent, preds):
        children = node.children
        if not children:  # a leaf in statement position (e.g. a stray token)
            idx = self.add(node, k, parent, True)
            if not node.is_named:  # '#else', '#endif', ...: a token, not a statement
                return preds
            self.connect(preds, idx)
            self.events[idx] = []
            return [(idx, CFG_NEXT)]
        idx, ev = self._cfg_node(node, k, parent, preds)
        h = _EXPR_HANDLERS.get(k)
        if h is not None:
            h(self, node, children, idx, ev, USE)
        else:
            self._exprs(children, idx, ev, USE)
        return [(idx, CFG_NEXT)]

    def _seq(self, node, k, parent, preds):
        idx = self.add(node, k, parent, False)
        for ch in node.children:
            preds = self.stmt(ch, idx, preds)
        return preds

    def _error(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        self.feat[idx * NUM_FEATURES + 5] = R_STMT
        cur = [(idx, CFG_NEXT)]
        kinds = self.stmt_kinds
        for ch in node.children:
            if ch.kind_id in kinds:
                cur = self.stmt(ch, idx, cur)
            else:
                self.expr(ch, idx, ev, USE)
        return cur

    def _if(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        exits, cond, cons, has_else = [], False, False, False
        for ch in node.children:
            kk = ch.kind_id
            if kk in _SKIP:
                self.skip(ch)
            elif not cond and kk in _COND:
                self.expr(ch, idx, ev, USE)
                cond = True
            elif ch.type == "else_clause":
                eidx = self.add(ch, kk, idx, False)
                for c2 in ch.children:
                    if c2.kind_id in _SKIP:
                        self.skip(c2)
                    else:
                        exits += self.stmt(c2, eidx, [(idx, CFG_FALSE)])
                        has_else = True
            elif cond and not cons:
                exits += self.stmt(ch, idx, [(idx, CFG_TRUE)])
                cons = True
            else:
                self.expr(ch, idx, ev, USE)
        if not has_else:
            exits.append((idx, CFG_FALSE))
        return exits

    @contextlib.contextmanager
    def _loop(self, continue_target: int):
        """Inside a loop body: ``break`` exits collect in the yielded list, ``continue`` jumps to the target."""
        breaks: list = []
        self.breaks.append(breaks)
        self.conts.append(continue_target)
        try:
            yield breaks
        finally:
            self.breaks.pop()
            self.conts.pop()

    def _while(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        cond = False
        with self._loop(idx) as breaks:
            for ch in node.children:
                kk = ch.kind_id
                if kk in _SKIP:
                    self.skip(ch)
                elif not cond and kk in _COND:
                    self.expr(ch, idx, ev, USE)
                    cond = True
                elif cond:
                    self.connect(self.stmt(ch, idx, [(idx, CFG_TRUE)]), idx)
                else:
                    self.expr(ch, idx, ev, USE)
        return [(idx, CFG_FALSE)] + breaks

    def _do(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, [])
        body = False
        with self._loop(idx) as breaks:
            for ch in node.children:
                kk = ch.kind_id
                if kk in _SKIP:
                    self.skip(ch)
                elif not body:
                    self.connect(self.stmt(ch, idx, preds + [(idx, CFG_TRUE)]), idx)
                    body = True
                else:
                    self.expr(ch, idx, ev, USE)
        if not body:
            self.connect(preds, idx)
        return [(idx, CFG_FALSE)] + breaks

    def _for(self, node, k, parent, preds):
        idx = self.add(node, k, parent, False)
        self.feat[idx * NUM_FEATURES + 5] = R_STMT
        ev: list = []
        self.events[idx] = ev
        breaks: list = []
        has_cond, upd, body_seen = False, -1, False
        for i, ch in enumerate(node.children):
            kk = ch.kind_id
            if kk in _SKIP:
                self.skip(ch)
                continue
            field = node.field_name_for_child(i)
            if field == "initializer":
                preds = self._simple(ch, kk, idx, preds)
            elif field == "condition":
                self.expr(ch, idx, ev, USE)
                has_cond = True
            elif field == "update":
                upd = self._simple(ch, kk, idx, [])[0][0]
                self.cfg += (upd, idx, CFG_NEXT)
            elif field == "body" and not body_seen:
                body_seen = True
                self.connect(preds, idx)
                preds = []
                cont = upd if upd >= 0 else idx
                with self._loop(cont) as breaks:
                    self.connect(self.stmt(ch, idx, [(idx, CFG_TRUE)]), cont)
            else:
                self.expr(ch, idx, ev, USE)
        if not body_seen:  # truncated `for (...)`
            self.connect(preds, idx)
            return [(idx, CFG_FALSE)]
        return ([(idx, CFG_FALSE)] if has_cond else []) + breaks

    def _switch(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        breaks: list = []
        sw = [idx, False]
        exits: list = []
        cond = False
        self.breaks.append(breaks)
        self.switches.append(sw)
        try:
            for ch in node.children:
                kk = ch.kind_id
                if kk in _SKIP:
                    self.skip(ch)
                elif not cond and kk in _COND:
                    self.expr(ch, idx, ev, USE)
                    cond = True
                elif cond:
                    exits += self.stmt(ch, idx, [])
                else:
                    self.expr(ch, idx, ev, USE)
        finally:
            self.breaks.pop()
            self.switches.pop()
        return exits + breaks + ([] if sw[1] else [(idx, CFG_FALSE)])

    def _case(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        if self.switches:
            sw = self.switches[-1]
            self.cfg += (sw[0], idx, CFG_TRUE)
        cur = [(idx, CFG_NEXT)]
        in_body = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in _SKIP:
                if kk in _COL_OR_DEFAULT:
                    if kk in _COLON:
                        in_body = True
                    elif self.switches:
                        self.switches[-1][1] = True
                self.skip(ch)
            elif in_body:
                cur = self.stmt(ch, idx, cur)
            else:
                self.expr(ch, idx, ev, USE)
        return cur

    def _label(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        cur = [(idx, CFG_NEXT)]
        named = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in _SKIP:
                self.skip(ch)
            elif not named:
                self.labels[self.src[ch.start_byte:ch.end_byte]] = idx
                self.expr(ch, idx, ev, 0)
                named = True
            else:
                cur = self.stmt(ch, idx, cur)
        return cur

    def _goto(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        for ch in node.children:
            if ch.kind_id in _SKIP:
                self.skip(ch)
            else:
                self.gotos.append((idx, self.src[ch.start_byte:ch.end_byte]))
                self.expr(ch, idx, ev, 0)
        return []

    def _return(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        for ch in node.children:
            self.expr(ch, idx, ev, USE)
        return []

    def _break(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        for ch in node.children:
            self.expr(ch, idx, ev, USE)
        if self.breaks:
            self.breaks[-1].append((idx, CFG_JUMP))
            return []
        return [(idx, CFG_NEXT)]  # stray break: keep the flow going

    def _continue(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        for ch in node.children:
            self.expr(ch, idx, ev, USE)
        if self.conts:
            self.cfg += (idx, self.conts[-1], CFG_JUMP)
            return []
        return [(idx, CFG_NEXT)]

    def _function(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, [])
        saved = (self.labels, self.gotos, self.breaks, self.conts, self.switches)
        self.labels, self.gotos, self.breaks, self.conts, self.switches = {}, [], [], [], []
        try:
            for ch in node.children:
                if ch.type == "compound_statement":
                    self.stmt(ch, idx, [(idx, CFG_NEXT)])
                else:
                    self.expr(ch, idx, ev, USE)
        finally:
            self.resolve_gotos()
            self.labels, self.gotos, self.breaks, self.conts, self.switches = saved
        return preds  # flow passes over a nested definition

    def _preproc_if(self, node, k, parent, preds):
        idx, ev = self._cfg_node(node, k, parent, preds)
        cur = [(idx, CFG_TRUE)]
        exits: list | None = None
        cond = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in _SKIP:
                self.skip(ch)
            elif not ch.is_named:
                self.expr(ch, idx, ev, 0)  # '#ifdef', '#endif', ...
            elif not cond:
                self.expr(ch, idx, ev, 0)  # condition / macro name: not variables
                cond = True
            elif kk in _PREPROC_ALT:
                exits = self.stmt(ch, idx, [(idx, CFG_FALSE)])
            else:
                cur = self.stmt(ch, idx, cur)
        return cur + (exits if exits is not None else [(idx, CFG_FALSE)])

    def resolve_gotos(self) -> None:
        for g, name in self.gotos:
            target = self.labels.get(name)
            if target is not None:
                self.cfg += (g, target, CFG_JUMP)
        self.gotos = []

    # ------------------------------------------------------------ data flow
    def def_use(self) -> tuple[list[int], list[int]]:
        """Reaching definitions over the CFG; returns the (def_node, use_node) pairs as two lists.

        Definitions are numbered in source order and sets of them are Python ints (bit ``d`` = definition
        ``d``); control-flow nodes are numbered by position (source order) and every per-node table is a
        list indexed by that position."""
        events = self.events
        evs = list(events.values())
        def_node: list[int] = []
        var_defs: dict[bytes, int] = {}
        gen: list[int] = []
        kill: list[int] = []
        for ev in evs:
            g = kl = 0
            for name, node, mode in ev:
                if mode & DEF:
                    bit = 1 << len(def_node)
                    m = var_defs[name] = var_defs.get(name, 0) | bit
                    def_node.append(node)
                    g = (g & ~m) | bit
                    kl |= m
            gen.append(g)
            kill.append(kl)
        if not def_node:
            return [], []
        # kill[n] must hold every definition of each variable n defines, including later ones
        for i, ev in enumerate(evs):
            if kill[i]:
                kl = 0
                for name, node, mode in ev:
                    if mode & DEF:
                        kl |= var_defs[name]
                kill[i] = kl
        pos = {n: i for i, n in enumerate(events)}
        n_nodes = len(evs)
        preds: list[list[int]] = [[] for _ in range(n_nodes)]
        succs: list[list[int]] = [[] for _ in range(n_nodes)]
        cfg = self.cfg
        for s, t in zip(cfg[0::3], cfg[1::3]):
            ps, pt = pos[s], pos[t]
            succs[ps].append(pt)
            preds[pt].append(ps)
        out = [0] * n_nodes
        inn = [0] * n_nodes
        work = list(range(n_nodes - 1, -1, -1))  # pop() takes nodes in source order
        queued = [True] * n_nodes
        while work:
            n = work.pop()
            queued[n] = False
            i = 0
            for p in preds[n]:
                i |= out[p]
            inn[n] = i
            o = gen[n] | (i & ~kill[n])
            if o != out[n]:
                out[n] = o
                for s in succs[n]:
                    if not queued[s]:
                        queued[s] = True
                        work.append(s)
        du_src: list[int] = []
        du_dst: list[int] = []
        memo: dict[int, list[int]] = {}  # reaching set of one variable -> its definition nodes (in order)
        d = 0
        for n, ev in enumerate(evs):
            cur = inn[n]
            for name, node, mode in ev:
                if mode & USE:
                    m = cur & var_defs.get(name, 0)
                    if m:
                        dl = memo.get(m)
                        if dl is None:
                            dl = memo[m] = []
                            while m:
                                b = m & -m
                                dl.append(def_node[b.bit_length() - 1])
                                m ^= b
                        du_src += dl
                        du_dst += [node] * len(dl)
                if mode & DEF:
                    cur = (cur & ~var_defs[name]) | (1 << d)
                    d += 1
        return du_src, du_dst


def _table(spec) -> dict:
    out = {}
    for names, fn in spec:
        for i in _ids(*names):
            out[i] = fn
    return out


_B = _Builder
_STMT_HANDLERS = _table((
    (("compound_statement", "translation_unit", "preproc_else", "attributed_statement"), _B._seq),
    (("if_statement",), _B._if),
    (("while_statement",), _B._while),
    (("do_statement",), _B._do),
    (("for_statement",), _B._for),
    (("switch_statement",), _B._switch),
    (("case_statement",), _B._case),
    (("labeled_statement",), _B._label),
    (("goto_statement",), _B._goto),
    (("return_statement",), _B._return),
    (("break_statement",), _B._break),
    (("continue_statement",), _B._continue),
    (("function_definition",), _B._function),
    (("preproc_if", "preproc_ifdef", "preproc_elif", "preproc_elifdef"), _B._preproc_if),
))
_STMT_HANDLERS[_ERROR_ID] = _B._error
_STMT_KINDS = frozenset(_STMT_HANDLERS) | _ids(
    "expression_statement", "declaration", "type_definition", "preproc_call", "preproc_def",
    "preproc_function_def", "preproc_include", "seh_try_statement", "seh_leave_statement")
_EXPR_HANDLERS = _table((
    (("assignment_expression",), _B._assign),
    (("init_declarator",), _B._init_decl),
    (("update_expression",), _B._update),
    (("declaration",), _B._declaration),
    (("call_expression",), _B._call),
    (("function_declarator",), _B._fdecl),
    (("array_declarator",), _B._array_decl),
))
_COL_OR_DEFAULT = _COLON | _DEFAULT_KW


def build_arrays(code: str | bytes, max_nodes: int = DEFAULT_MAX_NODES, trace: list | None = None) -> GraphArrays:
    """Build the graph of ``code`` as flat arrays (see the module docstring).

    ``trace``, if given, receives the tree-sitter node of each graph node (for debugging and tests)."""
    src = _to_bytes(code)
    if not src.strip():
        raise GraphBuildError("empty input")
    if max_nodes < 1:
        raise GraphBuildError(f"max_nodes={max_nodes} < 1")
    if sys.getrecursionlimit() < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)  # deep else-if chains; 3.11+ Python calls don't use the C stack
    tree = _parser().parse(src)
    root = tree.root_node
    b = _Builder(src, max_nodes, root.has_error, trace)
    truncated = False
    try:
        b.stmt(root, -1, [])
    except _Cap:
        truncated = True
        b.resolve_gotos()
    except RecursionError:
        raise GraphBuildError("nesting too deep for the builder") from None
    n = len(b.parent)
    if n <= 1:
        raise GraphBuildError("no code (only whitespace, comments or punctuation)")
    du_src, du_dst = b.def_use()
    parent, leaves, cfg, calls = b.parent, b.leaves, b.cfg, b.calls
    src_a = array("i", parent[1:])
    dst_a = array("i", range(1, n))
    et = array("b", [AST]) * (n - 1)
    if len(leaves) > 1:
        src_a += array("i", leaves[:-1])
        dst_a += array("i", leaves[1:])
        et += array("b", [NEXT_TOKEN]) * (len(leaves) - 1)
    if cfg:
        src_a += array("i", cfg[0::3])
        dst_a += array("i", cfg[1::3])
        et += array("b", cfg[2::3])
    if du_src:
        src_a += array("i", du_src)
        dst_a += array("i", du_dst)
        et += array("b", [DEF_USE]) * len(du_src)
    if calls:
        src_a += array("i", calls[0::2])
        dst_a += array("i", calls[1::2])
        et += array("b", [CALL_ARG]) * (len(calls) // 2)
    x = array("h", b.feat)
    visited = n + b.nskip
    return GraphArrays(n, x, src_a, dst_a, et, b.nerr / visited if visited else 0.0, truncated)


def fallback_arrays() -> GraphArrays:
    """The one-node graph stored for a function whose build failed."""
    x = array("h", [KIND_FALLBACK, 0, 0, 0, 0, R_FALLBACK])
    return GraphArrays(1, x, array("i"), array("i"), array("b"), 1.0, False)


def arrays_to_data(g: GraphArrays, sample_id: str = "", label: int = 0, failed: bool = False):
    """Wrap arrays into a PyG ``Data`` (long tensors)."""
    import torch
    from torch_geometric.data import Data

    x = torch.frombuffer(g.x, dtype=torch.int16).view(g.num_nodes, NUM_FEATURES).long() if g.num_nodes else \
        torch.zeros(0, NUM_FEATURES, dtype=torch.long)
    e = len(g.etype)
    if e:
        ei = torch.stack([torch.frombuffer(g.src, dtype=torch.int32), torch.frombuffer(g.dst, dtype=torch.int32)]).long()
        et = torch.frombuffer(g.etype, dtype=torch.int8).long()
    else:
        ei = torch.zeros(2, 0, dtype=torch.long)
        et = torch.zeros(0, dtype=torch.long)
    return Data(x=x, edge_index=ei, edge_type=et, y=torch.tensor([int(label)], dtype=torch.long),
                sample_id=sample_id, error_share=float(g.error_share), truncated=bool(g.truncated),
                failed=bool(failed), num_nodes=g.num_nodes)


def build_graph(code: str | bytes, sample_id: str = "", label: int = 0, max_nodes: int = DEFAULT_MAX_NODES):
    """C source -> PyG ``Data`` with ``x``, ``edge_index``, ``edge_type``, ``y``, ``sample_id``,
    ``error_share``, ``truncated`` and ``failed=False``. Raises :class:`GraphBuildError` only when the
    input gives no graph at all."""
    return arrays_to_data(build_arrays(code, max_nodes), sample_id, label)


def describe(code: str | bytes, max_nodes: int = DEFAULT_MAX_NODES) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Readable view of a graph: a label ``kind:text`` per node (text on one line, cut at 40 characters)
    and the edges as ``(edge type name, source, target)``. For debugging and tests."""
    trace: list = []
    g = build_arrays(code, max_nodes, trace)
    labels = []
    for n in trace:
        text = " ".join(n.text.decode("utf-8", "replace").split()) if n.text is not None else ""
        labels.append(f"{n.type}:{text[:40]}")
    return labels, [(EDGE_TYPES[t], s, d) for s, d, t in zip(g.src, g.dst, g.etype)]
