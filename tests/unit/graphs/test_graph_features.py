"""The ``literal`` and ``role`` columns of ``x`` in built graphs, as the builder's docstring specifies them."""

from __future__ import annotations

import pytest

from streamguard.graphs.builder import KIND_ERROR, KIND_FALLBACK, build_arrays, fallback_arrays
from streamguard.graphs.features import FEATURE_SPEC, LITERAL_CATEGORIES, NUM_FEATURES, ROLES

LITERAL = list(FEATURE_SPEC).index("literal")
ROLE = list(FEATURE_SPEC).index("role")
KIND = list(FEATURE_SPEC).index("kind")


def nodes(code: str) -> list[tuple[str, str, str, str, bool]]:
    """(tree-sitter type, text, literal category, role, is_missing) of each graph node, in node order."""
    trace: list = []
    g = build_arrays(code, trace=trace)
    x = g.x
    return [(n.type, n.text.decode(), LITERAL_CATEGORIES[x[i * NUM_FEATURES + LITERAL]],
             ROLES[x[i * NUM_FEATURES + ROLE]], n.is_missing) for i, n in enumerate(trace)]


@pytest.mark.parametrize("literal, category", [
    ("0", "int_zero"), ("0u", "int_zero"), ("1", "int_one"), ("2", "int_small"), ("255", "int_small"),
    ("10UL", "int_small"), ("256", "int_large"), ("100000", "int_large"),
    ("0x10", "int_hex"), ("0XFFu", "int_hex"), ("0x0", "int_hex"),
    ("1.5f", "float"), ("2e3", "float"), ("0.0", "float"),
    ('""', "string_empty"), ('u8""', "string_empty"), ('"abc"', "string"), ('L"wide"', "string"),
    ('"%s"', "string_format"), ('"len=%zu\\n"', "string_format"),
    ("'a'", "char"), ("'\\n'", "char"), ("L'x'", "char"),
    ("NULL", "null"), ("nullptr", "null"), ("true", "bool"), ("false", "bool"),
])
def test_literal_category_of_a_returned_literal(literal, category):
    graph = nodes(f"int f(void) {{ return {literal}; }}")
    ret = next(i for i, n in enumerate(graph) if n[0] == "return_statement")
    kind, text, lit, _, _ = graph[ret + 1]  # the returned expression (the `return` keyword is no node)
    assert text == literal and lit == category, (kind, lit)


def test_only_literal_nodes_have_a_literal_category():
    graph = nodes('int f(int n) { char *s = "%d"; return n + 0x10 + g(s, \'c\', NULL); }')
    with_cat = {(kind, text, lit) for kind, text, lit, _, _ in graph if lit != "none"}
    assert with_cat == {("string_literal", '"%d"', "string_format"), ("number_literal", "0x10", "int_hex"),
                        ("char_literal", "'c'", "char"), ("null", "NULL", "null")}
    # the parts of a literal are plain: the string's content, the character, the NULL token
    assert ("string_content", "%d", "none") in {(k, t, lit) for k, t, lit, _, _ in graph}


ROLES_CODE = """int f(int n, char *buf) {
    int i;
    i = n;
    i++;
    i += 2;
    memcpy(buf, "x", i);
    return i;
}"""


def test_roles_of_identifiers():
    ids = [(text, role) for kind, text, _, role, _ in nodes(ROLES_CODE) if kind == "identifier"]
    assert ids == [
        ("f", "leaf"),  # the function's name is no variable
        ("n", "param"), ("buf", "param"),
        ("i", "def"),  # int i;
        ("i", "def"), ("n", "use"),  # i = n;
        ("i", "def_use"),  # i++;
        ("i", "def_use"),  # i += 2;
        ("memcpy", "callee"), ("buf", "use"), ("i", "use"),
        ("i", "use"),  # return i;
    ]


def test_roles_of_statements_inner_nodes_and_other_leaves():
    role = {(kind, text.split("\n")[0]): r for kind, text, _, r, _ in nodes(ROLES_CODE)}
    for stmt in [("function_definition", "int f(int n, char *buf) {"), ("declaration", "int i;"),
                 ("expression_statement", "i = n;"), ("expression_statement", "i++;"),
                 ("expression_statement", 'memcpy(buf, "x", i);'), ("return_statement", "return i;")]:
        assert role[stmt] == "statement", stmt
    for inner in [("translation_unit", "int f(int n, char *buf) {"), ("compound_statement", "{"),
                  ("assignment_expression", "i = n"), ("update_expression", "i++"),
                  ("call_expression", 'memcpy(buf, "x", i)'), ("argument_list", '(buf, "x", i)'),
                  ("string_literal", '"x"'), ("parameter_list", "(int n, char *buf)")]:
        assert role[inner] == "inner", inner
    for leaf in [("primitive_type", "int"), ("=", "="), ("++", "++"), ("+=", "+="), ("number_literal", "2"),
                 ("string_content", "x"), ("*", "*")]:
        assert role[leaf] == "leaf", leaf


def test_kr_parameters_and_for_loop_roles():
    kr = [(t, r) for k, t, _, r, _ in nodes("int add(a, b)\n  int a;\n  int b;\n{\n  return a + b;\n}")
          if k == "identifier"]
    assert kr[:3] == [("add", "leaf"), ("a", "param"), ("b", "param")]
    assert kr[-2:] == [("a", "use"), ("b", "use")]
    loop = [(t, r) for k, t, _, r, _ in nodes("void f(int n) { for (int i = 0; i < n; i++) g(i); }")
            if k in ("identifier", "for_statement", "update_expression")]
    assert loop == [("f", "leaf"), ("n", "param"), ("for (int i = 0; i < n; i++) g(i);", "statement"), ("i", "def"),
                    ("i", "use"), ("n", "use"), ("i++", "statement"), ("i", "def_use"), ("g", "callee"), ("i", "use")]


def test_missing_token_role():
    graph = nodes("void f(struct s *a) { a->; }")  # tree-sitter inserts a MISSING field name
    missing = [(kind, role) for kind, _, _, role, is_missing in graph if is_missing]
    assert missing == [("field_identifier", "missing")]
    assert all(role != "missing" for _, _, _, role, m in nodes(ROLES_CODE))


def test_error_and_fallback_rows():
    trace: list = []
    g = build_arrays("int f() { } } } if (x) { y = 1; ) ) ; return", trace=trace)
    errors = [i for i, n in enumerate(trace) if n.type == "ERROR"]
    assert errors and all(g.x[i * NUM_FEATURES + KIND] == KIND_ERROR for i in errors)
    fb = fallback_arrays()
    assert fb.num_nodes == 1 and fb.x[KIND] == KIND_FALLBACK and ROLES[fb.x[ROLE]] == "fallback"
