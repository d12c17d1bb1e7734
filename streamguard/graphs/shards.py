"""Graph shards: thousands of graphs in one file, and a PyG-compatible dataset over them.

A shard is one ``torch.save`` file (loaded with ``weights_only=True, mmap=True``) holding
the graphs of one split concatenated, in compact dtypes:

``ids`` (list of str), ``y`` int64 ``[G]``, ``node_ptr`` / ``edge_ptr`` int64 ``[G+1]``
(graph ``i`` owns rows ``node_ptr[i]:node_ptr[i+1]`` of ``x`` and columns
``edge_ptr[i]:edge_ptr[i+1]`` of ``edge_index``), ``x`` int16 ``[N, 6]``,
``edge_index`` int32 ``[2, E]`` (indices local to each graph), ``edge_type`` int8 ``[E]``,
``error_share`` float32 ``[G]``, ``truncated`` / ``failed`` bool ``[G]``.

Loading (:func:`load_graphs`, :class:`GraphShardDataset`) keeps these compact dtypes: each graph's
``x`` / ``edge_index`` / ``edge_type`` are zero-copy views into the shard's tensors, and
:func:`streamguard.models.gnn.gnn_collate` casts a batch to int64. (Casting every graph to int64 at
load time turned 21,854 graphs into ~1.4 GB of fresh LongTensors and dominated the load.)

``manifest.json`` in the graphs directory lists the shards of each split (see
:mod:`streamguard.graphs.stage`).
"""

from __future__ import annotations

import bisect
import gc
import os
from array import array
from pathlib import Path

import torch
from torch_geometric.data import Data

from streamguard.atomic import atomic_path
from streamguard.errors import UserError
from streamguard.graphs.builder import NUM_FEATURES, GraphArrays
from streamguard.jsonio import read_json

SHARD_FORMAT = 1
MANIFEST = "manifest.json"


def pack_shard(items: list[tuple[str, int, GraphArrays, bool]]) -> dict:
    """``[(sample_id, label, arrays, failed)]`` -> the shard dict."""
    x, src, dst, et = array("h"), array("i"), array("i"), array("b")
    node_ptr, edge_ptr = [0], [0]
    for _, _, g, _ in items:
        x += g.x
        src += g.src
        dst += g.dst
        et += g.etype
        node_ptr.append(node_ptr[-1] + g.num_nodes)
        edge_ptr.append(edge_ptr[-1] + len(g.etype))
    n, e = node_ptr[-1], edge_ptr[-1]
    return {
        "format": SHARD_FORMAT,
        "ids": [i for i, _, _, _ in items],
        "y": torch.tensor([int(y) for _, y, _, _ in items], dtype=torch.long),
        "node_ptr": torch.tensor(node_ptr, dtype=torch.long),
        "edge_ptr": torch.tensor(edge_ptr, dtype=torch.long),
        "x": torch.frombuffer(x, dtype=torch.int16).view(n, NUM_FEATURES).clone() if n else
        torch.zeros(0, NUM_FEATURES, dtype=torch.int16),
        "edge_index": torch.stack([torch.frombuffer(src, dtype=torch.int32), torch.frombuffer(dst, dtype=torch.int32)])
        if e else torch.zeros(2, 0, dtype=torch.int32),
        "edge_type": torch.frombuffer(et, dtype=torch.int8).clone() if e else torch.zeros(0, dtype=torch.int8),
        "error_share": torch.tensor([g.error_share for _, _, g, _ in items], dtype=torch.float32),
        "truncated": torch.tensor([g.truncated for _, _, g, _ in items], dtype=torch.bool),
        "failed": torch.tensor([f for _, _, _, f in items], dtype=torch.bool),
    }


def write_shard(path: str | os.PathLike, items: list[tuple[str, int, GraphArrays, bool]]) -> None:
    with atomic_path(path) as tmp:  # torch.save names the archive after the path: `.<name>` (see streamguard.atomic)
        torch.save(pack_shard(items), tmp)


def read_shard(path: str | os.PathLike, mmap: bool = True) -> dict:
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise UserError(f"{path}: shard missing (rebuild with `streamguard build-graphs`)") from None
    except Exception as e:
        raise UserError(f"{path}: not a readable graph shard ({type(e).__name__}: {e})") from None
    if not isinstance(shard, dict) or shard.get("format") != SHARD_FORMAT:
        raise UserError(f"{path}: shard format {shard.get('format') if isinstance(shard, dict) else '?'!r}, "
                        f"expected {SHARD_FORMAT}")
    return shard


def _graphs_of(shard: dict) -> list[Data]:
    """All graphs of a shard as ``Data`` whose tensors are zero-copy views into the shard's (memory-mapped)
    compact tensors: ``x`` int16, ``edge_index`` int32, ``edge_type`` int8, ``y`` int64 ``[1]``.
    :func:`streamguard.models.gnn.gnn_collate` casts to int64 once per batch."""
    n_sizes = shard["node_ptr"].diff().tolist()
    e_sizes = shard["edge_ptr"].diff().tolist()
    xs = shard["x"].split(n_sizes)
    eis = shard["edge_index"].split(e_sizes, dim=1)
    ets = shard["edge_type"].split(e_sizes)
    ys = shard["y"].view(-1, 1).unbind(0)
    err = shard["error_share"].tolist()
    tr = shard["truncated"].tolist()
    fl = shard["failed"].tolist()
    return [_data(x=xs[i], edge_index=eis[i], edge_type=ets[i], y=ys[i], sample_id=sid, error_share=err[i],
                  truncated=tr[i], failed=fl[i], num_nodes=n_sizes[i])
            for i, sid in enumerate(shard["ids"])]


def _data(**attrs) -> Data:
    """``Data(**attrs)`` without the per-attribute ``__setattr__`` checks (about 7x faster; the values are
    already well-formed tensors and scalars). This is what makes loading a shard cheap."""
    d = Data()
    d._store._mapping.update(attrs)
    return d


def _graph_at(shard: dict, i: int) -> Data:
    """Graph ``i`` of a shard, in the same compact dtypes as :func:`_graphs_of` (views, no copy)."""
    n0, n1 = shard["node_ptr"][i:i + 2].tolist()
    e0, e1 = shard["edge_ptr"][i:i + 2].tolist()
    return _data(x=shard["x"][n0:n1], edge_index=shard["edge_index"][:, e0:e1], edge_type=shard["edge_type"][e0:e1],
                 y=shard["y"][i:i + 1], sample_id=shard["ids"][i], error_share=float(shard["error_share"][i]),
                 truncated=bool(shard["truncated"][i]), failed=bool(shard["failed"][i]), num_nodes=n1 - n0)


def read_manifest(graphs_dir: str | os.PathLike) -> dict:
    path = Path(graphs_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: missing (is {graphs_dir} the output of `streamguard build-graphs`?)")
    try:
        return read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def _shard_paths(graphs_dir: str | os.PathLike, split: str) -> list[Path]:
    manifest = read_manifest(graphs_dir)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise UserError(f"{Path(graphs_dir) / MANIFEST}: field splits has no split {split!r} "
                        f"(has {sorted(splits)})")
    return [Path(graphs_dir) / s for s in splits[split]["shards"]]


def load_graphs(graphs_dir: str | os.PathLike, split: str, mmap: bool = True) -> list[Data]:
    """Every graph of ``split`` in manifest order, as PyG ``Data`` in the shard's compact dtypes (``x`` int16,
    ``edge_index`` int32, ``edge_type`` int8; views into the memory-mapped shard, or into one in-memory copy
    per shard with ``mmap=False``). Cast with ``gnn_collate`` (int64 per batch) before a model sees them."""
    paths = _shard_paths(graphs_dir, split)
    out: list[Data] = []
    gc_was_on = gc.isenabled()
    gc.disable()  # tens of thousands of acyclic objects: generational GC passes would only rescan them
    try:
        for p in paths:
            out += _graphs_of(read_shard(p, mmap=mmap))
    finally:
        if gc_was_on:
            gc.enable()
    return out


class GraphShardDataset(torch.utils.data.Dataset):
    """Random access to the graphs of one split; shards are memory-mapped on first touch and each item is
    built on access as zero-copy views (compact dtypes, as :func:`load_graphs`).

    Works with ``torch_geometric.loader.DataLoader`` and with ``gnn_collate``.
    """

    def __init__(self, graphs_dir: str | os.PathLike, split: str):
        self.paths = _shard_paths(graphs_dir, split)
        manifest = read_manifest(graphs_dir)
        counts = manifest["splits"][split].get("shard_counts")
        self._shards: dict[int, dict] = {}
        if counts is None:
            counts = [len(self._shard(i)["ids"]) for i in range(len(self.paths))]
        self._ends = []
        total = 0
        for c in counts:
            total += c
            self._ends.append(total)

    def _shard(self, j: int) -> dict:
        s = self._shards.get(j)
        if s is None:
            s = self._shards[j] = read_shard(self.paths[j], mmap=True)
        return s

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, i: int) -> Data:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        j = bisect.bisect_right(self._ends, i)
        start = self._ends[j - 1] if j else 0
        return _graph_at(self._shard(j), i - start)

    @property
    def ids(self) -> list[str]:
        return [sid for j in range(len(self.paths)) for sid in self._shard(j)["ids"]]
