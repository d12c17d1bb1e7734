"""Real-world C: every input gives a graph or a GraphBuildError with a reason, never another exception."""

from __future__ import annotations

import pytest
import torch

from streamguard.graphs import FEATURE_SPEC, NUM_EDGE_TYPES, GraphBuildError, build_graph
from streamguard.graphs.builder import describe


def check(g, max_nodes: int = 4000) -> None:
    n = g.num_nodes
    assert 1 <= n <= max_nodes and g.x.shape == (n, len(FEATURE_SPEC))
    for c, size in enumerate(FEATURE_SPEC.values()):
        assert 0 <= int(g.x[:, c].min()) and int(g.x[:, c].max()) < size
    if g.edge_type.numel():
        assert 0 <= int(g.edge_index.min()) and int(g.edge_index.max()) < n
        assert 0 <= int(g.edge_type.min()) and int(g.edge_type.max()) < NUM_EDGE_TYPES
    assert 0.0 <= g.error_share <= 1.0


CASES = {
    "unexpanded_macros": """static int foo(struct dev *d) {
        DECLARE_BITMAP(mask, 64);
        LIST_FOREACH(e, &d->list, link) { use(e); }
        if (unlikely(!d)) return -EINVAL;
        FOO_BEGIN x = 1; FOO_END
        return d->ops->probe(d) ?: 0;
    }""",
    "kr_definition": "int add(a, b)\n  int a;\n  char *b;\n{\n  return a + *b;\n}",
    "ifdef_in_body": """int f(int x) {
    #ifdef CONFIG_A
        x += 1;
    #elif defined(CONFIG_B)
        x += 2;
    #else
        x += 3;
    #endif
    #if 0
        if (x) {
    #endif
        return x;
    }""",
    "gnu_extensions": """static inline __attribute__((always_inline)) int g(int *p, void *q) {
        typeof(*p) t = ({ int y = *p; y * 2; });
        switch (t) { case 1 ... 5: t++; break; }
        __asm__ volatile ("nop" ::: "memory");
        void *l = &&done;
        goto *l;
    done:
        return t ?: 1;
    }""",
    "truncated": "int f(int a) {\n  if (a > 0) {\n    while (a--) {\n      x = buf[a",
    "unbalanced": "int f() { } } } if (x) { y = 1; ) ) ; return",
    "body_only": "x = 1; if (a) return; y = x + 2;",
    "nested_function": "int outer(void) { int inner(int z) { return z + 1; } return inner(2); }",
    "stray_break_continue_case": "void f(void) { break; continue; case 3: x = 1; }",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_world_c_gives_a_graph(name):
    g = build_graph(CASES[name])
    check(g)


def test_error_share_recorded():
    assert build_graph(CASES["kr_definition"]).error_share == 0.0
    assert build_graph(CASES["unbalanced"]).error_share > 0.0
    assert build_graph(CASES["truncated"]).error_share > 0.0


def test_kr_parameters_are_definitions():
    labels, edges = describe(CASES["kr_definition"])
    du = [(labels[s], labels[d]) for t, s, d in edges if t == "def_use"]
    assert du.count(("identifier:a", "identifier:a")) == 1 and ("identifier:b", "identifier:b") in du


def test_ifdef_branches_are_alternatives():
    labels, edges = describe(CASES["ifdef_in_body"])
    cfg = {(labels[s].split(":")[0], labels[d].split(":", 1)[1], t) for t, s, d in edges if t.startswith("cfg")}
    assert ("preproc_ifdef", "x += 1;", "cfg_true") in cfg
    assert ("preproc_elif", "x += 2;", "cfg_true") in cfg and ("preproc_elif", "x += 3;", "cfg_false") in cfg


@pytest.mark.parametrize("data", [
    b"int f(char *s) { return s[0] == '\xff' ? \"\xc3\x28\" : 0; }",  # invalid UTF-8
    b"int f(void) { int a\x00= 1; return a; }",  # NUL byte
    "int f(void) { return '\ud800'; }",  # lone surrogate in a str
    b"\xfe\xff\x00\x00garbage\x80\x81",
])
def test_non_utf8_and_binary_input(data):
    check(build_graph(data))


@pytest.mark.parametrize("data", ["", "   \n\t ", b"", "/* just a comment */", "// c\n", None])
def test_empty_input_is_a_reported_failure(data):
    with pytest.raises(GraphBuildError) as e:
        build_graph(data)
    assert e.value.reason


def test_huge_function_is_capped_at_max_nodes():
    body = "\n".join(f"    v{i} = v{i - 1} * {i} + buf[{i} % n];" for i in range(1, 6000))
    code = f"int big(int *buf, int n) {{\n    int v0 = 0;\n{body}\n    return v5999;\n}}"
    g = build_graph(code, max_nodes=4000)
    check(g, 4000)
    assert g.num_nodes == 4000 and g.truncated is True
    full = build_graph(code, max_nodes=200_000)
    assert full.num_nodes > 50_000 and full.truncated is False  # tens of thousands of nodes are fine too


def test_deep_nesting():
    chain = "int f(int x) {\n" + "".join(f"  if (x == {i}) return {i};\n  else" for i in range(1500)) + " return -1;\n}"
    check(build_graph(chain))
    parens = "int f(int x) { return " + "(" * 3000 + "x" + ")" * 3000 + "; }"
    try:
        check(build_graph(parens))
    except GraphBuildError as e:  # a reported failure is acceptable, a crash is not
        assert "deep" in e.reason


def test_many_functions_in_one_input():
    g = build_graph("int a(int x) { return x; }\nint b(int x) { return x + 1; }\nstruct s { int f; };")
    check(g)
    assert g.x.dtype == torch.long
