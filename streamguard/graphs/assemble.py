"""The graph as compact arrays (:class:`GraphArrays`), and those arrays as a PyG ``Data``.

Workers of the pipeline stage send :class:`GraphArrays` and shards store them
(:mod:`streamguard.graphs.shards`); only :func:`arrays_to_data` makes tensors.
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

from streamguard.graphs.features import AST, CALL_ARG, DEF_USE, KIND_FALLBACK, NEXT_TOKEN, NUM_FEATURES, R_FALLBACK


class GraphArrays(NamedTuple):
    """A graph as flat arrays (what workers send and shards store)."""

    num_nodes: int
    x: array  # int16, num_nodes * NUM_FEATURES, row-major
    src: array  # int32, E
    dst: array  # int32, E
    etype: array  # int8, E
    error_share: float
    truncated: bool


def assemble(feat: list[int], parent: list[int], leaves: list[int], cfg: list[int], du_src: list[int],
             du_dst: list[int], calls: list[int], error_share: float, truncated: bool) -> GraphArrays:
    """Arrays of a graph from its parts: the flat rows of ``x``, each node's parent (node 0: the root),
    the kept leaves in source order, control-flow ``(src, dst, type)`` triples, def -> use pairs as two
    lists and ``(argument, callee)`` pairs. Edges are ordered by type: ast, next_token, control flow
    (in walk order), def_use, call_arg."""
    n = len(parent)
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
    return GraphArrays(n, array("h", feat), src_a, dst_a, et, error_share, truncated)


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
        ei = torch.stack([torch.frombuffer(g.src, dtype=torch.int32),
                          torch.frombuffer(g.dst, dtype=torch.int32)]).long()
        et = torch.frombuffer(g.etype, dtype=torch.int8).long()
    else:
        ei = torch.zeros(2, 0, dtype=torch.long)
        et = torch.zeros(0, dtype=torch.long)
    return Data(x=x, edge_index=ei, edge_type=et, y=torch.tensor([int(label)], dtype=torch.long),
                sample_id=sample_id, error_share=float(g.error_share), truncated=bool(g.truncated),
                failed=bool(failed), num_nodes=g.num_nodes)
