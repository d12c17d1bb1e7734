"""Reaching definitions over a control-flow graph, and the def -> use pairs they give.

A pure function of the control-flow graph and of what each control-flow node reads and writes, so it
can be tested on hand-made graphs without parsing C (``tests/unit/graphs/test_dataflow.py``). The
builder (:mod:`streamguard.graphs.builder`) feeds it the statements of a function with their variable
accesses in evaluation order and turns the pairs into ``def_use`` edges.

An *access* is ``(variable, site, mode)``: the variable's name (any hashable), the site that stands
for this occurrence in the output (the builder: the identifier's graph node), and ``mode``, a bit set
of :data:`USE` (reads the variable), :data:`DEF` (writes it) and :data:`PARAM` (a parameter, which is
also a ``DEF``; data flow treats it as a plain definition). Within one control-flow node the accesses
are taken in order, so ``x = x + 1`` is ``[(x, rhs, USE), (x, lhs, DEF)]``: the read sees the previous
definitions, not this one; an access with ``USE | DEF`` (``x++``) is read first, then written.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

USE, DEF, PARAM = 1, 2, 4
"""Modes of a variable access (bit flags)."""

Site = TypeVar("Site")


def def_use_pairs(accesses: Mapping[Hashable, Sequence[tuple[Hashable, Site, int]]],
                  edges: Iterable[tuple[Hashable, Hashable]]) -> tuple[list[Site], list[Site]]:
    """Every (definition site, use site) pair such that the definition may reach the use.

    ``accesses`` maps each control-flow node to its accesses in order (nodes without any map to an
    empty list); its key order is the order of the nodes in the output (the builder: source order).
    ``edges`` are the control-flow edges ``(from, to)``, both ends keys of ``accesses``. A definition
    reaches a use if some path of edges leads from it to the use without passing another definition
    of the same variable (a redefinition kills it). Returns the pairs as two parallel lists, ordered by
    use (node order, then access order) and, for one use, by definition (node order, access order).
    """
    evs = list(accesses.values())
    # Definitions are numbered in node order and sets of them are Python ints (bit d = definition d);
    # nodes are numbered by position and every per-node table is a list indexed by that position.
    def_site: list = []
    var_defs: dict = {}  # variable -> the set of all its definitions
    gen: list[int] = []
    kill: list[int] = []
    for ev in evs:
        g = kl = 0
        for name, site, mode in ev:
            if mode & DEF:
                bit = 1 << len(def_site)
                m = var_defs[name] = var_defs.get(name, 0) | bit
                def_site.append(site)
                g = (g & ~m) | bit
                kl |= m
        gen.append(g)
        kill.append(kl)
    if not def_site:
        return [], []
    # kill[n] must hold every definition of each variable n defines, including later ones
    for i, ev in enumerate(evs):
        if kill[i]:
            kl = 0
            for name, _, mode in ev:
                if mode & DEF:
                    kl |= var_defs[name]
            kill[i] = kl
    pos = {n: i for i, n in enumerate(accesses)}
    n_nodes = len(evs)
    preds: list[list[int]] = [[] for _ in range(n_nodes)]
    succs: list[list[int]] = [[] for _ in range(n_nodes)]
    for s, t in edges:
        ps, pt = pos[s], pos[t]
        succs[ps].append(pt)
        preds[pt].append(ps)
    out = [0] * n_nodes
    inn = [0] * n_nodes
    work = list(range(n_nodes - 1, -1, -1))  # pop() takes nodes in order
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
    du_src: list = []
    du_dst: list = []
    memo: dict[int, list] = {}  # reaching set of one variable -> its definition sites (in order)
    d = 0
    for n, ev in enumerate(evs):
        cur = inn[n]
        for name, site, mode in ev:
            if mode & USE:
                m = cur & var_defs.get(name, 0)
                if m:
                    dl = memo.get(m)
                    if dl is None:
                        dl = memo[m] = []
                        while m:
                            b = m & -m
                            dl.append(def_site[b.bit_length() - 1])
                            m ^= b
                    du_src += dl
                    du_dst += [site] * len(dl)
            if mode & DEF:
                cur = (cur & ~var_defs[name]) | (1 << d)
                d += 1
    return du_src, du_dst
