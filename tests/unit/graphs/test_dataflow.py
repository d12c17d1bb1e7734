"""Reaching definitions on hand-made control-flow graphs (no C, no parser): the def -> use pairs."""

from __future__ import annotations

import random

import pytest

from streamguard.graphs.dataflow import DEF, PARAM, USE, def_use_pairs


def pairs(accesses, edges) -> set[tuple[str, str]]:
    src, dst = def_use_pairs(accesses, edges)
    assert len(src) == len(dst)
    return set(zip(src, dst))


def chain(*nodes) -> list[tuple]:
    return list(zip(nodes, nodes[1:]))


def test_straight_line_redefinition_kills_the_earlier_definition():
    # x = 1; y = x; x = 2; use(x, y)
    acc = {
        "s1": [("x", "x@1", DEF)],
        "s2": [("x", "x@2", USE), ("y", "y@2", DEF)],
        "s3": [("x", "x@3", DEF)],
        "s4": [("x", "x@4", USE), ("y", "y@4", USE)],
    }
    assert pairs(acc, chain("s1", "s2", "s3", "s4")) == {("x@1", "x@2"), ("x@3", "x@4"), ("y@2", "y@4")}


def test_if_else_join_gets_both_branches_and_not_the_killed_definition():
    # x = 0; if (c) x = 1; else x = 2; use(x)
    acc = {"entry": [("x", "x0", DEF)], "if": [("c", "c", USE)], "then": [("x", "x1", DEF)],
           "else": [("x", "x2", DEF)], "join": [("x", "xj", USE)]}
    edges = [("entry", "if"), ("if", "then"), ("if", "else"), ("then", "join"), ("else", "join")]
    assert pairs(acc, edges) == {("x1", "xj"), ("x2", "xj")}
    # without the else branch the first definition reaches the join around the `then`
    del acc["else"]
    edges = [("entry", "if"), ("if", "then"), ("if", "join"), ("then", "join")]
    assert pairs(acc, edges) == {("x0", "xj"), ("x1", "xj")}


def test_loop_carried_definition_reaches_the_condition_and_the_body():
    # i = 0; while (i < n) { i = i + 1; } use(i)
    acc = {
        "init": [("i", "i0", DEF)],
        "cond": [("i", "i_cond", USE), ("n", "n_cond", USE)],
        "body": [("i", "i_rhs", USE), ("i", "i_lhs", DEF)],  # the right side is read before the write
        "after": [("i", "i_after", USE)],
    }
    edges = [("init", "cond"), ("cond", "body"), ("body", "cond"), ("cond", "after")]
    got = pairs(acc, edges)
    for use in ("i_cond", "i_rhs", "i_after"):
        assert {d for d, u in got if u == use} == {"i0", "i_lhs"}, use
    assert not any(u == "n_cond" for _, u in got)  # n is never defined
    # without the back edge nothing is loop-carried
    assert {d for d, u in pairs(acc, edges[:2] + edges[3:]) if u == "i_rhs"} == {"i0"}


def test_self_loop_reads_its_own_previous_write():
    # for (;;) s = s + 1;  as one node with an edge to itself
    acc = {"entry": [("s", "s0", DEF)], "loop": [("s", "s_rhs", USE), ("s", "s_lhs", DEF)]}
    assert pairs(acc, [("entry", "loop"), ("loop", "loop")]) == {("s0", "s_rhs"), ("s_lhs", "s_rhs")}


def test_kill_and_order_inside_one_node():
    # one node: x = 1, read x, x = 2 (e.g. `x = 1, y = x, x = 2;`); the next node sees only x = 2
    acc = {"a": [("x", "d1", DEF), ("x", "u1", USE), ("x", "d2", DEF)], "b": [("x", "u2", USE)]}
    assert pairs(acc, [("a", "b")]) == {("d1", "u1"), ("d2", "u2")}


def test_read_write_access_reads_first_then_defines():
    # x = 0; x++; use(x)
    acc = {"a": [("x", "x0", DEF)], "b": [("x", "x_inc", USE | DEF)], "c": [("x", "x_use", USE)]}
    assert pairs(acc, chain("a", "b", "c")) == {("x0", "x_inc"), ("x_inc", "x_use")}


def test_parameter_is_a_definition_and_variables_do_not_mix():
    acc = {"entry": [("n", "n_param", DEF | PARAM), ("m", "m_param", DEF | PARAM)],
           "s1": [("n", "n_use", USE)], "s2": [("m", "m_use", USE)]}
    assert pairs(acc, chain("entry", "s1", "s2")) == {("n_param", "n_use"), ("m_param", "m_use")}


def test_unreachable_node_and_no_definitions():
    acc = {"entry": [("x", "x0", DEF)], "dead": [("x", "x_dead", USE)], "next": [("x", "x1", USE)]}
    assert pairs(acc, [("entry", "next")]) == {("x0", "x1")}  # `dead` has no predecessor
    assert def_use_pairs({"a": [("x", "u", USE)], "b": []}, [("a", "b")]) == ([], [])


def test_output_order_is_by_use_then_by_definition():
    acc = {"if": [], "t": [("x", "dt", DEF)], "e": [("x", "de", DEF)], "j": [("x", "u1", USE), ("x", "u2", USE)]}
    edges = [("j", "j"), ("if", "e"), ("if", "t"), ("t", "j"), ("e", "j")]  # edge order does not matter
    assert def_use_pairs(acc, edges) == (["dt", "de", "dt", "de"], ["u1", "u1", "u2", "u2"])


def _reference(accesses, edges) -> set[tuple]:
    """Brute force: follow each definition forward until a redefinition of its variable."""
    succ: dict = {n: [] for n in accesses}
    for s, t in edges:
        succ[s].append(t)
    out = set()
    for n, acc in accesses.items():
        for i, (var, site, mode) in enumerate(acc):
            if not mode & DEF:
                continue
            killed = False
            for v2, s2, m2 in acc[i + 1:]:  # rest of its own node
                if v2 == var and m2 & USE:
                    out.add((site, s2))
                if v2 == var and m2 & DEF:
                    killed = True
                    break
            if killed:
                continue
            seen, todo = set(), list(succ[n])
            while todo:
                m = todo.pop()
                if m in seen:
                    continue
                seen.add(m)
                for v2, s2, m2 in accesses[m]:
                    if v2 == var and m2 & USE:
                        out.add((site, s2))
                    if v2 == var and m2 & DEF:
                        break
                else:
                    todo += succ[m]
    return out


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_match_a_brute_force_search(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 9)
    nodes = [f"n{i}" for i in range(n)]
    modes = [USE, USE, DEF, USE | DEF, DEF | PARAM]
    acc = {v: [(rng.choice("xyz"), f"{v}.{j}", rng.choice(modes)) for j in range(rng.randint(0, 3))] for v in nodes}
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(0, 2 * n))]
    assert pairs(acc, edges) == _reference(acc, edges)
