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

Modules
-------
This module is the entry point and the specification; the work is split by job:
:mod:`~streamguard.graphs.features` (vocabularies, feature tables, token hashing),
:mod:`~streamguard.graphs.nodes` (graph nodes, their rows of ``x``, variable accesses in expressions),
:mod:`~streamguard.graphs.cfg` (the control-flow walk over statements),
:mod:`~streamguard.graphs.dataflow` (reaching definitions -> def/use pairs, a pure function) and
:mod:`~streamguard.graphs.assemble` (edge arrays, PyG ``Data``).
"""

from __future__ import annotations

import sys

import tree_sitter

from streamguard.graphs.assemble import GraphArrays, arrays_to_data, assemble, fallback_arrays
from streamguard.graphs.cfg import ControlFlowWalk
from streamguard.graphs.dataflow import def_use_pairs
from streamguard.graphs.features import (
    EDGE_TYPES,
    FEATURE_SPEC,
    KIND_ERROR,
    KIND_FALLBACK,
    LANGUAGE,
    LITERAL_CATEGORIES,
    NUM_EDGE_TYPES,
    NUM_FEATURES,
    ROLES,
    SUBTOKEN_BUCKETS,
    TOKEN_BUCKETS,
    clear_caches,
    grammar_version,
)
from streamguard.graphs.nodes import Cap, NodeTable

__all__ = ["BUILDER_VERSION", "DEFAULT_MAX_NODES", "EDGE_TYPES", "FEATURE_SPEC", "KIND_ERROR", "KIND_FALLBACK",
           "LANGUAGE", "LITERAL_CATEGORIES", "NUM_EDGE_TYPES", "NUM_FEATURES", "ROLES", "SUBTOKEN_BUCKETS",
           "TOKEN_BUCKETS", "GraphArrays", "GraphBuildError", "arrays_to_data", "build_arrays", "build_graph",
           "build_or_fallback", "clear_caches", "describe", "fallback_arrays", "parse"]

_REVISION = "1"
BUILDER_VERSION = f"{_REVISION}+tree-sitter-c-{grammar_version()}"
"""Changes whenever graphs would change: our revision plus the grammar version."""

DEFAULT_MAX_NODES = 4000
_RECURSION_LIMIT = 20_000


class GraphBuildError(Exception):
    """The input gives no graph at all; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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
    root = _parser().parse(src).root_node
    nodes = NodeTable(src, max_nodes, root.has_error, trace)
    walk = ControlFlowWalk(nodes)
    truncated = False
    try:
        walk.stmt(root, -1, [])
    except Cap:
        truncated = True
        walk.resolve_gotos()
    except RecursionError:
        raise GraphBuildError("nesting too deep for the builder") from None
    n = len(nodes)
    if n <= 1:
        raise GraphBuildError("no code (only whitespace, comments or punctuation)")
    cfg = walk.cfg
    du_src, du_dst = def_use_pairs(walk.accesses, zip(cfg[0::3], cfg[1::3]))
    visited = n + nodes.nskip
    return assemble(nodes.feat, nodes.parent, nodes.leaves, cfg, du_src, du_dst, nodes.calls,
                    nodes.nerr / visited if visited else 0.0, truncated)


def build_or_fallback(code: str | bytes, max_nodes: int = DEFAULT_MAX_NODES) -> tuple[GraphArrays, str | None]:
    """The graph of ``code`` and None, or the one-node fallback graph and why there is no graph: what the
    ``build_graphs`` stage stores for every sample, and what inference builds on the fly. A builder bug
    must not lose the function either: it falls back too, with the exception as the reason."""
    try:
        return build_arrays(code, max_nodes), None
    except GraphBuildError as e:
        return fallback_arrays(), e.reason
    except Exception as e:
        return fallback_arrays(), f"builder error: {type(e).__name__}: {e}"[:300]


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
