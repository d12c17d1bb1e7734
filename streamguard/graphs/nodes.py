"""Graph nodes: one row of ``x`` per kept tree-sitter node, and the variable accesses of expressions.

:class:`NodeTable` numbers the nodes in source pre-order, records each node's parent (the ``ast``
edges), the kept leaves (``next_token``), call arguments (``call_arg``), the feature rows and the
share of error nodes. Its expression visitor also records, for the statement being walked, which
identifiers read or write which variable (the input of :mod:`streamguard.graphs.dataflow`) and
marks their ``role``. The control-flow walk (:mod:`streamguard.graphs.cfg`) calls it for everything
below statement level.
"""

from __future__ import annotations

from streamguard.graphs.dataflow import DEF, PARAM, USE
from streamguard.graphs.features import (
    ERROR_ID,
    ERROR_ROW,
    HASHED_ROWS,
    IDENT,
    INNER_ROW,
    LEAF_ROW,
    R_CALLEE,
    R_DEF,
    R_DEFUSE,
    R_MISSING,
    R_PARAM,
    R_USE,
    hashed_row,
    kind_ids,
    string_row,
)

# tokens that are not graph nodes (they carry nothing beyond their parent's kind)
SKIP = (kind_ids("(", ")", "{", "}", "[", "]", ";", ",", ":", '"', "'", "\n", "if", "else", "while", "do", "for",
                 "switch", "case", "default", "return", "break", "continue", "goto", named=False)
        | kind_ids("comment"))
_ASSIGN_PLAIN = kind_ids("=", named=False)
# kinds through which a definition reaches the identifier below (others turn it into a read)
_PASSTHRU = kind_ids("parenthesized_expression", "pointer_declarator", "parenthesized_declarator",
                     "attributed_declarator", "parameter_declaration", "parameter_list", "type_qualifier")
_PARAMETER_LIST = kind_ids("parameter_list")
_ARGUMENT_LIST = kind_ids("argument_list")
_ROLE_OF_MODE = {USE: R_USE, DEF: R_DEF, USE | DEF: R_DEFUSE, DEF | PARAM: R_PARAM, USE | DEF | PARAM: R_PARAM}


class Cap(Exception):
    """Raised by :meth:`NodeTable.add` when the graph already has ``max_nodes`` nodes."""


class NodeTable:
    """The nodes of one graph, in source pre-order, as flat lists (see the module docstring).

    ``acc`` arguments are the access list of the enclosing control-flow node; ``mode`` is how the
    identifiers below are accessed (bits of :data:`~streamguard.graphs.dataflow.USE` ...; 0: not a
    variable, e.g. a label or a macro name)."""

    def __init__(self, src: bytes, max_nodes: int, has_error: bool, trace: list | None = None):
        self.src = src
        self.max_nodes = max_nodes
        self.has_error = has_error  # the tree has ERROR/MISSING nodes (else is_missing needs no check)
        self.trace = trace  # if a list: receives the tree-sitter node of each graph node
        self.feat: list[int] = []  # the rows of x, flat: kind, token, sub1, sub2, literal, role per node
        self.parent: list[int] = []  # one per node: its length is the node count
        self.leaves: list[int] = []
        self.calls: list[int] = []  # flat (argument, callee) pairs
        self.nerr = 0  # ERROR and MISSING nodes seen
        self.nskip = 0  # tree-sitter nodes seen but not kept

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, node, k: int, parent: int, leaf: bool) -> int:
        """New node for tree-sitter ``node`` of kind ``k`` under graph node ``parent``; its row of ``x``
        is the row of its kind (a ``leaf`` is a token: hashed text, missing-token role). Returns its id."""
        parents = self.parent
        idx = len(parents)
        if idx >= self.max_nodes:
            raise Cap
        parents.append(parent)
        if self.trace is not None:
            self.trace.append(node)
        feat = self.feat
        if k == ERROR_ID:
            self.nerr += 1
            feat += ERROR_ROW
        elif leaf:
            self.leaves.append(idx)
            cache = HASHED_ROWS[k]
            if cache is None:
                feat += LEAF_ROW[k]
            else:
                text = self.src[node.start_byte:node.end_byte]
                f = cache.get(text)
                feat += f if f is not None else hashed_row(k, text, cache)
            if self.has_error and node.is_missing:
                self.nerr += 1
                feat[-1] = R_MISSING
        else:
            f = INNER_ROW[k]
            feat += f if f is not None else string_row(k, self.src[node.start_byte:node.end_byte])
        return idx

    def skip(self, node) -> None:
        """Count a tree-sitter node that is not kept (error share)."""
        self.nskip += 1
        if self.has_error and node.is_missing:
            self.nerr += 1

    # ---------------------------------------------------------- expressions
    def expr(self, node, parent: int, acc: list, mode: int) -> int:
        """Add ``node`` and its subtree; returns its id, or -1 if ``node`` is a skipped token."""
        k = node.kind_id
        if k in SKIP:  # `skip`, written out: this is on the hot path too (call arguments)
            self.nskip += 1
            if self.has_error and node.is_missing:
                self.nerr += 1
            return -1
        return self._ex(node, k, parent, acc, mode)

    def _ex(self, node, k: int, parent: int, acc: list, mode: int) -> int:
        """``expr`` for a node already known not to be skipped (kind ``k``): the hot path of the build.

        ``add(node, k, parent, leaf=not children)`` followed by ``inside``, written out in place: on
        typical code the two calls per node cost ~6% of the build time."""
        parents = self.parent
        idx = len(parents)
        if idx >= self.max_nodes:
            raise Cap
        parents.append(parent)
        if self.trace is not None:
            self.trace.append(node)
        children = node.children
        feat = self.feat
        if k == ERROR_ID:
            self.nerr += 1
            feat += ERROR_ROW
            if not children:
                return idx
        elif not children:  # leaf
            self.leaves.append(idx)
            cache = HASHED_ROWS[k]
            if cache is None:
                feat += LEAF_ROW[k]
                if self.has_error and node.is_missing:
                    self.nerr += 1
                    feat[-1] = R_MISSING
                return idx
            text = self.src[node.start_byte:node.end_byte]
            f = cache.get(text)
            feat += f if f is not None else hashed_row(k, text, cache)
            if self.has_error and node.is_missing:
                self.nerr += 1
                feat[-1] = R_MISSING
            if k == IDENT and mode:
                acc.append((text, idx, mode))
                feat[-1] = _ROLE_OF_MODE[mode]
            return idx
        else:
            f = INNER_ROW[k]
            feat += f if f is not None else string_row(k, self.src[node.start_byte:node.end_byte])
        h = _EXPR_HANDLERS.get(k)
        if h is not None:
            h(self, node, children, idx, acc, mode)
        else:
            self.exprs(children, idx, acc, USE if mode & DEF and k not in _PASSTHRU else mode)
        return idx

    def inside(self, node, k: int, children, idx: int, acc: list, mode: int) -> None:
        """The children of inner node ``node`` (graph node ``idx``), by the rule of its kind ``k``."""
        h = _EXPR_HANDLERS.get(k)
        if h is not None:
            h(self, node, children, idx, acc, mode)
        else:
            self.exprs(children, idx, acc, USE if mode & DEF and k not in _PASSTHRU else mode)

    def exprs(self, children, parent: int, acc: list, mode: int) -> None:
        """``expr`` over a list of siblings (skipped tokens counted inline: the hot loop)."""
        ex = self._ex
        for ch in children:
            k = ch.kind_id
            if k in SKIP:
                self.nskip += 1
                if self.has_error and ch.is_missing:
                    self.nerr += 1
            else:
                ex(ch, k, parent, acc, mode)

    # Per-kind rules: how the access mode passes to the children, in which order they are read.
    def _assign(self, node, children, idx, acc, mode):
        if len(children) < 3:
            self.exprs(children, idx, acc, USE)
            return
        left: list = []  # the right side is read before the left side is written
        lmode = DEF if children[1].kind_id in _ASSIGN_PLAIN else DEF | USE
        self.expr(children[0], idx, left, lmode)
        self.exprs(children[1:], idx, acc, USE)
        acc += left

    def _init_decl(self, node, children, idx, acc, mode):
        left: list = []
        self.expr(children[0], idx, left, mode if mode & DEF else DEF)
        self.exprs(children[1:], idx, acc, USE)
        acc += left

    def _update(self, node, children, idx, acc, mode):
        self.exprs(children, idx, acc, DEF | USE)

    def _declaration(self, node, children, idx, acc, mode):
        self.exprs(children, idx, acc, mode if mode & DEF else DEF)

    def _array_decl(self, node, children, idx, acc, mode):
        first = True  # the declared name (first named child) is defined, the size is read
        for ch in children:
            if first and ch.is_named:
                self.expr(ch, idx, acc, mode)
                first = False
            else:
                self.expr(ch, idx, acc, USE if mode else 0)

    def _fdecl(self, node, children, idx, acc, mode):
        for ch in children:
            k = ch.kind_id
            if k == IDENT:  # the function's name
                self.expr(ch, idx, acc, 0)
            elif k in _PARAMETER_LIST:
                self.expr(ch, idx, acc, DEF | PARAM)
            else:
                self.expr(ch, idx, acc, mode)

    def _call(self, node, children, idx, acc, mode):
        callee = -1
        for ch in children:
            if callee < 0:
                if ch.kind_id == IDENT:
                    callee = self.add(ch, IDENT, idx, True)
                    self.feat[-1] = R_CALLEE
                else:
                    callee = self.expr(ch, idx, acc, USE)
            elif ch.kind_id in _ARGUMENT_LIST:
                aidx = self.add(ch, ch.kind_id, idx, False)
                calls = self.calls
                for a in ch.children:
                    j = self.expr(a, aidx, acc, USE)
                    if j >= 0:
                        calls += (j, callee)
            else:
                self.expr(ch, idx, acc, USE)


def _table(spec) -> dict:
    return {i: fn for names, fn in spec for i in kind_ids(*names)}


_EXPR_HANDLERS = _table((
    (("assignment_expression",), NodeTable._assign),
    (("init_declarator",), NodeTable._init_decl),
    (("update_expression",), NodeTable._update),
    (("declaration",), NodeTable._declaration),
    (("call_expression",), NodeTable._call),
    (("function_declarator",), NodeTable._fdecl),
    (("array_declarator",), NodeTable._array_decl),
))
