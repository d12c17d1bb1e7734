"""Exact control-flow and def-use edges on small hand-written C functions."""

from __future__ import annotations

import torch

from streamguard.graphs import EDGE_TYPES, FEATURE_SPEC, NUM_EDGE_TYPES, build_graph
from streamguard.graphs.builder import build_arrays

CFG_TYPES = ("cfg_next", "cfg_true", "cfg_false", "cfg_jump")
_STMT_PARENTS = {"function_definition", "expression_statement", "declaration", "if_statement", "while_statement",
                 "do_statement", "for_statement", "switch_statement", "case_statement", "return_statement",
                 "break_statement", "continue_statement", "goto_statement", "labeled_statement", "update_expression"}


def _graph(code: str):
    trace: list = []
    g = build_arrays(code, trace=trace)
    first = {}
    for n in trace:
        text = "ENTRY" if n.type == "function_definition" else n.text.decode().strip().split("\n")[0].strip()
        first.setdefault(text, []).append(n)
    labels = []
    for n in trace:
        text = "ENTRY" if n.type == "function_definition" else n.text.decode().strip().split("\n")[0].strip()
        labels.append(text if len(first[text]) == 1 else f"{text}@{n.start_point[0]}")
    return g, trace, labels


def cfg_edges(code: str) -> set[tuple[str, str, str]]:
    g, _, labels = _graph(code)
    return {(labels[s], labels[d], EDGE_TYPES[t]) for s, d, t in zip(g.src, g.dst, g.etype)
            if EDGE_TYPES[t] in CFG_TYPES}


def def_use(code: str) -> set[tuple[str, str, str]]:
    """(statement of the write, statement of the read, variable)."""
    g, trace, labels = _graph(code)
    index = {n.id: i for i, n in enumerate(trace)}

    def stmt(i):
        n = trace[i]
        while n.type not in _STMT_PARENTS or n.type == "update_expression" and n.parent.type == "expression_statement":
            n = n.parent
        return labels[index[n.id]]

    return {(stmt(s), stmt(d), trace[d].text.decode()) for s, d, t in zip(g.src, g.dst, g.etype)
            if EDGE_TYPES[t] == "def_use"}


IF_ELSE = """int f(int a) {
    int x;
    if (a > 0)
        x = 1;
    else
        x = 2;
    return x;
}"""


def test_if_else_join_cfg():
    assert cfg_edges(IF_ELSE) == {
        ("ENTRY", "int x;", "cfg_next"),
        ("int x;", "if (a > 0)", "cfg_next"),
        ("if (a > 0)", "x = 1;", "cfg_true"),
        ("if (a > 0)", "x = 2;", "cfg_false"),
        ("x = 1;", "return x;", "cfg_next"),
        ("x = 2;", "return x;", "cfg_next"),
    }


def test_assigned_in_both_branches_gives_two_def_use_edges():
    assert def_use(IF_ELSE) == {
        ("ENTRY", "if (a > 0)", "a"),
        ("x = 1;", "return x;", "x"),
        ("x = 2;", "return x;", "x"),
    }


def test_if_without_else_lets_declaration_reach():
    code = "int f(int a) {\n    int x;\n    if (a)\n        x = 1;\n    return x;\n}"
    assert ("int x;", "return x;", "x") in def_use(code)
    assert ("x = 1;", "return x;", "x") in def_use(code)


WHILE = """void f(int n) {
    int i = 0;
    while (i < n) {
        if (i == 5)
            break;
        if (i == 3) {
            i += 2;
            continue;
        }
        i++;
    }
    done(i);
}"""


def test_while_with_break_and_continue_cfg():
    assert cfg_edges(WHILE) == {
        ("ENTRY", "int i = 0;", "cfg_next"),
        ("int i = 0;", "while (i < n) {", "cfg_next"),
        ("while (i < n) {", "if (i == 5)", "cfg_true"),
        ("if (i == 5)", "break;", "cfg_true"),
        ("if (i == 5)", "if (i == 3) {", "cfg_false"),
        ("if (i == 3) {", "i += 2;", "cfg_true"),
        ("i += 2;", "continue;", "cfg_next"),
        ("continue;", "while (i < n) {", "cfg_jump"),
        ("if (i == 3) {", "i++;", "cfg_false"),
        ("i++;", "while (i < n) {", "cfg_next"),
        ("while (i < n) {", "done(i);", "cfg_false"),
        ("break;", "done(i);", "cfg_jump"),
    }


def test_while_loop_carried_def_use():
    du = def_use(WHILE)
    for reader in ("while (i < n) {", "if (i == 5)", "if (i == 3) {", "i += 2;", "i++;", "done(i);"):
        writers = {w for w, r, v in du if r == reader and v == "i"}
        assert writers == {"int i = 0;", "i += 2;", "i++;"}, reader
    assert ("ENTRY", "while (i < n) {", "n") in du


SWITCH = """int f(int c) {
    int r = 0;
    switch (c) {
    case 1:
        r = 10;
    case 2:
        r += 1;
        break;
    case 3:
        r = 5;
        break;
    }
    return r;
}"""


def test_switch_fall_through_cfg():
    assert cfg_edges(SWITCH) == {
        ("ENTRY", "int r = 0;", "cfg_next"),
        ("int r = 0;", "switch (c) {", "cfg_next"),
        ("switch (c) {", "case 1:", "cfg_true"),
        ("switch (c) {", "case 2:", "cfg_true"),
        ("switch (c) {", "case 3:", "cfg_true"),
        ("switch (c) {", "return r;", "cfg_false"),  # no default
        ("case 1:", "r = 10;", "cfg_next"),
        ("r = 10;", "case 2:", "cfg_next"),  # fall-through
        ("case 2:", "r += 1;", "cfg_next"),
        ("r += 1;", "break;@7", "cfg_next"),
        ("break;@7", "return r;", "cfg_jump"),
        ("case 3:", "r = 5;", "cfg_next"),
        ("r = 5;", "break;@10", "cfg_next"),
        ("break;@10", "return r;", "cfg_jump"),
    }


def test_switch_fall_through_def_use():
    du = def_use(SWITCH)
    assert {w for w, r, v in du if r == "r += 1;"} == {"int r = 0;", "r = 10;"}
    assert {w for w, r, v in du if r == "return r;"} == {"int r = 0;", "r += 1;", "r = 5;"}


def test_switch_with_default_has_no_false_edge():
    code = "int f(int c) {\n  switch (c) {\n  case 1: return 1;\n  default: return 0;\n  }\n}"
    edges = cfg_edges(code)
    assert not any(t == "cfg_false" for _, _, t in edges)
    assert ("switch (c) {", "default: return 0;", "cfg_true") in edges


GOTO = """int f(int *p) {
    int rc = -1;
    if (!p)
        goto out;
    rc = use(p);
out:
    cleanup(p);
    return rc;
}"""


def test_goto_cfg_and_def_use():
    assert cfg_edges(GOTO) == {
        ("ENTRY", "int rc = -1;", "cfg_next"),
        ("int rc = -1;", "if (!p)", "cfg_next"),
        ("if (!p)", "goto out;", "cfg_true"),
        ("if (!p)", "rc = use(p);", "cfg_false"),
        ("goto out;", "out:", "cfg_jump"),
        ("rc = use(p);", "out:", "cfg_next"),
        ("out:", "cleanup(p);", "cfg_next"),
        ("cleanup(p);", "return rc;", "cfg_next"),
    }
    assert {w for w, r, v in def_use(GOTO) if r == "return rc;"} == {"int rc = -1;", "rc = use(p);"}


FOR = """int sum(int n) {
    int s = 0;
    for (int i = 0; i < n; i++)
        s = s + i;
    return s;
}"""


def test_for_loop_cfg_and_loop_carried_def_use():
    assert cfg_edges(FOR) == {
        ("ENTRY", "int s = 0;", "cfg_next"),
        ("int s = 0;", "int i = 0;", "cfg_next"),
        ("int i = 0;", "for (int i = 0; i < n; i++)", "cfg_next"),
        ("for (int i = 0; i < n; i++)", "s = s + i;", "cfg_true"),
        ("s = s + i;", "i++", "cfg_next"),
        ("i++", "for (int i = 0; i < n; i++)", "cfg_next"),
        ("for (int i = 0; i < n; i++)", "return s;", "cfg_false"),
    }
    du = def_use(FOR)
    assert ("s = s + i;", "s = s + i;", "s") in du  # loop-carried: last iteration's write
    assert {w for w, r, v in du if r == "s = s + i;" and v == "s"} == {"int s = 0;", "s = s + i;"}
    assert {w for w, r, v in du if r == "for (int i = 0; i < n; i++)" and v == "i"} == {"int i = 0;", "i++"}
    assert {w for w, r, v in du if r == "return s;"} == {"int s = 0;", "s = s + i;"}


def test_do_while_and_continue():
    code = "void f(int n) {\n  do {\n    if (n == 2)\n      continue;\n    n--;\n  } while (n > 0);\n  end();\n}"
    edges = cfg_edges(code)
    do = "do {"
    assert ("ENTRY", "if (n == 2)", "cfg_next") in edges
    assert (do, "if (n == 2)", "cfg_true") in edges
    assert ("continue;", do, "cfg_jump") in edges
    assert ("n--;", do, "cfg_next") in edges
    assert (do, "end();", "cfg_false") in edges


def test_features_and_tensors():
    g = build_graph("int f(char *buf_len) { return memcpy(buf_len, \"%s\", 0x10); }", sample_id="s1", label=1)
    assert g.x.dtype == torch.long and g.x.shape[1] == len(FEATURE_SPEC)
    for c, size in enumerate(FEATURE_SPEC.values()):
        assert 0 <= int(g.x[:, c].min()) and int(g.x[:, c].max()) < size
    assert g.edge_index.shape == (2, g.edge_type.numel()) and int(g.edge_index.max()) < g.num_nodes
    assert 0 <= int(g.edge_type.min()) and int(g.edge_type.max()) < NUM_EDGE_TYPES
    assert g.y.tolist() == [1] and g.sample_id == "s1" and g.error_share == 0.0 and g.truncated is False
    assert "call_arg" in {EDGE_TYPES[t] for t in g.edge_type.tolist()}
    # stable hashing: same identifier, same ids, in every process (crc32, not hash())
    again = build_graph("void g(int buf_len) { buf_len++; }")
    tok = lambda d: {int(r[1]) for r in d.x if int(r[1])}  # noqa: E731
    assert tok(g) & tok(again)
    import zlib

    from streamguard.graphs.features import token_features as _token_features
    assert _token_features(b"memcpy", True)[0] == zlib.crc32(b"memcpy") % 8191 + 1
