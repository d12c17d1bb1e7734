"""The control-flow walk: statements become control-flow nodes joined by ``cfg_*`` edges.

:class:`ControlFlowWalk` walks the parse tree from the root, statement by statement, adding every
node to a :class:`~streamguard.graphs.nodes.NodeTable` (which handles everything below statement
level). Each statement handler takes the *predecessors* of the statement — ``(node, edge type)``
pairs still waiting for their target — connects them to the statement's control-flow node and
returns the predecessors of whatever comes next. The rules (which node stands for what, where
``break``/``continue``/``goto`` go) are specified in :mod:`streamguard.graphs.builder`.
"""

from __future__ import annotations

import contextlib

from streamguard.graphs.dataflow import USE
from streamguard.graphs.features import (
    CFG_FALSE,
    CFG_JUMP,
    CFG_NEXT,
    CFG_TRUE,
    ERROR_ID,
    NUM_FEATURES,
    R_STMT,
    ROLE_COLUMN,
    kind_ids,
)
from streamguard.graphs.nodes import SKIP, NodeTable

_COND = kind_ids("parenthesized_expression", "condition_clause")
_PREPROC_ALT = kind_ids("preproc_else", "preproc_elif", "preproc_elifdef")
_COLON = kind_ids(":", named=False)
_COL_OR_DEFAULT = _COLON | kind_ids("default", named=False)
_ELSE_CLAUSE = kind_ids("else_clause")
_COMPOUND = kind_ids("compound_statement")

Preds = list  # [(control-flow node, edge type)]: edges waiting for the next statement


class ControlFlowWalk:
    """Walks statements; ``cfg`` holds the control-flow edges as flat ``(src, dst, type)`` triples and
    ``accesses`` maps each control-flow node, in source order, to its variable accesses."""

    def __init__(self, nodes: NodeTable):
        self.nodes = nodes
        self.src = nodes.src
        self.expr = nodes.expr  # below statement level
        self.skip = nodes.skip
        self.cfg: list[int] = []
        self.accesses: dict[int, list] = {}
        # per function: label name -> its node, pending gotos, the enclosing loops and switches
        self.labels: dict[bytes, int] = {}
        self.gotos: list[tuple[int, bytes]] = []
        self.breaks: list[list] = []  # innermost last: the break exits of each enclosing loop/switch
        self.conts: list[int] = []  # innermost last: where `continue` goes in each enclosing loop
        self.switches: list[list] = []  # innermost last: [switch node, has a `default`]

    def connect(self, preds: Preds, dst: int) -> None:
        cfg = self.cfg
        for p, t in preds:
            cfg += (p, dst, t)

    def stmt(self, node, parent: int, preds: Preds) -> Preds:
        """Walk the statement ``node`` (child of graph node ``parent``) reached from ``preds``."""
        k = node.kind_id
        if k in SKIP:
            self.skip(node)
            return preds
        h = _STMT_HANDLERS.get(k)
        if h is None:
            return self._simple(node, k, parent, preds)
        return h(self, node, k, parent, preds)

    def _cfg_node(self, node, k, parent, preds) -> tuple[int, list]:
        """A control-flow node for ``node``, reached from ``preds``; returns it and its access list."""
        nodes = self.nodes
        idx = nodes.add(node, k, parent, False)
        nodes.feat[idx * NUM_FEATURES + ROLE_COLUMN] = R_STMT
        cfg = self.cfg
        for p, t in preds:
            cfg += (p, idx, t)
        acc: list = []
        self.accesses[idx] = acc
        return idx, acc

    def resolve_gotos(self) -> None:
        for g, name in self.gotos:
            target = self.labels.get(name)
            if target is not None:
                self.cfg += (g, target, CFG_JUMP)
        self.gotos = []

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

    # ------------------------------------------------------------ statements
    def _simple(self, node, k, parent, preds):
        children = node.children
        if not children:  # a leaf in statement position (e.g. a stray token)
            idx = self.nodes.add(node, k, parent, True)
            if not node.is_named:  # '#else', '#endif', ...: a token, not a statement
                return preds
            self.connect(preds, idx)
            self.accesses[idx] = []
            return [(idx, CFG_NEXT)]
        idx, acc = self._cfg_node(node, k, parent, preds)
        self.nodes.inside(node, k, children, idx, acc, USE)
        return [(idx, CFG_NEXT)]

    def _seq(self, node, k, parent, preds):
        idx = self.nodes.add(node, k, parent, False)
        for ch in node.children:
            preds = self.stmt(ch, idx, preds)
        return preds

    def _error(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        cur = [(idx, CFG_NEXT)]
        for ch in node.children:
            if ch.kind_id in _STMT_KINDS:
                cur = self.stmt(ch, idx, cur)
            else:
                self.expr(ch, idx, acc, USE)
        return cur

    def _if(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        exits, cond, cons, has_else = [], False, False, False
        for ch in node.children:
            kk = ch.kind_id
            if kk in SKIP:
                self.skip(ch)
            elif not cond and kk in _COND:
                self.expr(ch, idx, acc, USE)
                cond = True
            elif kk in _ELSE_CLAUSE:
                eidx = self.nodes.add(ch, kk, idx, False)
                for c2 in ch.children:
                    if c2.kind_id in SKIP:
                        self.skip(c2)
                    else:
                        exits += self.stmt(c2, eidx, [(idx, CFG_FALSE)])
                        has_else = True
            elif cond and not cons:
                exits += self.stmt(ch, idx, [(idx, CFG_TRUE)])
                cons = True
            else:
                self.expr(ch, idx, acc, USE)
        if not has_else:
            exits.append((idx, CFG_FALSE))
        return exits

    def _while(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        cond = False
        with self._loop(idx) as breaks:
            for ch in node.children:
                kk = ch.kind_id
                if kk in SKIP:
                    self.skip(ch)
                elif not cond and kk in _COND:
                    self.expr(ch, idx, acc, USE)
                    cond = True
                elif cond:
                    self.connect(self.stmt(ch, idx, [(idx, CFG_TRUE)]), idx)
                else:
                    self.expr(ch, idx, acc, USE)
        return [(idx, CFG_FALSE)] + breaks

    def _do(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, [])  # the condition comes after the body
        body = False
        with self._loop(idx) as breaks:
            for ch in node.children:
                kk = ch.kind_id
                if kk in SKIP:
                    self.skip(ch)
                elif not body:
                    self.connect(self.stmt(ch, idx, preds + [(idx, CFG_TRUE)]), idx)
                    body = True
                else:
                    self.expr(ch, idx, acc, USE)
        if not body:
            self.connect(preds, idx)
        return [(idx, CFG_FALSE)] + breaks

    def _for(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, [])  # reached after the initialiser
        breaks: list = []
        has_cond, upd, body_seen = False, -1, False
        for i, ch in enumerate(node.children):
            kk = ch.kind_id
            if kk in SKIP:
                self.skip(ch)
                continue
            field = node.field_name_for_child(i)
            if field == "initializer":
                preds = self._simple(ch, kk, idx, preds)
            elif field == "condition":
                self.expr(ch, idx, acc, USE)
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
                self.expr(ch, idx, acc, USE)
        if not body_seen:  # truncated `for (...)`
            self.connect(preds, idx)
            return [(idx, CFG_FALSE)]
        return ([(idx, CFG_FALSE)] if has_cond else []) + breaks

    def _switch(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        breaks: list = []
        sw = [idx, False]
        exits: list = []
        cond = False
        self.breaks.append(breaks)
        self.switches.append(sw)
        try:
            for ch in node.children:
                kk = ch.kind_id
                if kk in SKIP:
                    self.skip(ch)
                elif not cond and kk in _COND:
                    self.expr(ch, idx, acc, USE)
                    cond = True
                elif cond:
                    exits += self.stmt(ch, idx, [])
                else:
                    self.expr(ch, idx, acc, USE)
        finally:
            self.breaks.pop()
            self.switches.pop()
        return exits + breaks + ([] if sw[1] else [(idx, CFG_FALSE)])

    def _case(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        if self.switches:
            self.cfg += (self.switches[-1][0], idx, CFG_TRUE)
        cur = [(idx, CFG_NEXT)]
        in_body = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in SKIP:
                if kk in _COL_OR_DEFAULT:
                    if kk in _COLON:
                        in_body = True
                    elif self.switches:
                        self.switches[-1][1] = True
                self.skip(ch)
            elif in_body:
                cur = self.stmt(ch, idx, cur)
            else:
                self.expr(ch, idx, acc, USE)
        return cur

    def _label(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        cur = [(idx, CFG_NEXT)]
        named = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in SKIP:
                self.skip(ch)
            elif not named:
                self.labels[self.src[ch.start_byte:ch.end_byte]] = idx
                self.expr(ch, idx, acc, 0)
                named = True
            else:
                cur = self.stmt(ch, idx, cur)
        return cur

    def _goto(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        for ch in node.children:
            if ch.kind_id in SKIP:
                self.skip(ch)
            else:
                self.gotos.append((idx, self.src[ch.start_byte:ch.end_byte]))
                self.expr(ch, idx, acc, 0)
        return []

    def _return(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        self.nodes.exprs(node.children, idx, acc, USE)
        return []

    def _break(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        self.nodes.exprs(node.children, idx, acc, USE)
        if self.breaks:
            self.breaks[-1].append((idx, CFG_JUMP))
            return []
        return [(idx, CFG_NEXT)]  # stray break: keep the flow going

    def _continue(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        self.nodes.exprs(node.children, idx, acc, USE)
        if self.conts:
            self.cfg += (idx, self.conts[-1], CFG_JUMP)
            return []
        return [(idx, CFG_NEXT)]

    def _function(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, [])  # the entry; parameters are defined here
        saved = (self.labels, self.gotos, self.breaks, self.conts, self.switches)
        self.labels, self.gotos, self.breaks, self.conts, self.switches = {}, [], [], [], []
        try:
            for ch in node.children:
                if ch.kind_id in _COMPOUND:
                    self.stmt(ch, idx, [(idx, CFG_NEXT)])
                else:
                    self.expr(ch, idx, acc, USE)
        finally:
            self.resolve_gotos()
            self.labels, self.gotos, self.breaks, self.conts, self.switches = saved
        return preds  # flow passes over a nested definition

    def _preproc_if(self, node, k, parent, preds):
        idx, acc = self._cfg_node(node, k, parent, preds)
        cur = [(idx, CFG_TRUE)]
        exits: list | None = None
        cond = False
        for ch in node.children:
            kk = ch.kind_id
            if kk in SKIP:
                self.skip(ch)
            elif not ch.is_named:
                self.expr(ch, idx, acc, 0)  # '#ifdef', '#endif', ...
            elif not cond:
                self.expr(ch, idx, acc, 0)  # condition / macro name: not variables
                cond = True
            elif kk in _PREPROC_ALT:
                exits = self.stmt(ch, idx, [(idx, CFG_FALSE)])
            else:
                cur = self.stmt(ch, idx, cur)
        return cur + (exits if exits is not None else [(idx, CFG_FALSE)])


def _table(spec) -> dict:
    return {i: fn for names, fn in spec for i in kind_ids(*names)}


_W = ControlFlowWalk
_STMT_HANDLERS = _table((
    (("compound_statement", "translation_unit", "preproc_else", "attributed_statement"), _W._seq),
    (("if_statement",), _W._if),
    (("while_statement",), _W._while),
    (("do_statement",), _W._do),
    (("for_statement",), _W._for),
    (("switch_statement",), _W._switch),
    (("case_statement",), _W._case),
    (("labeled_statement",), _W._label),
    (("goto_statement",), _W._goto),
    (("return_statement",), _W._return),
    (("break_statement",), _W._break),
    (("continue_statement",), _W._continue),
    (("function_definition",), _W._function),
    (("preproc_if", "preproc_ifdef", "preproc_elif", "preproc_elifdef"), _W._preproc_if),
))
_STMT_HANDLERS[ERROR_ID] = _W._error
# kinds that continue the flow in sequence inside an ERROR node
_STMT_KINDS = frozenset(_STMT_HANDLERS) | kind_ids(
    "expression_statement", "declaration", "type_definition", "preproc_call", "preproc_def",
    "preproc_function_def", "preproc_include", "seh_try_statement", "seh_leave_statement")
