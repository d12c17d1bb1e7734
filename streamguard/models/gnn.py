"""GNN over StreamGuard program graphs: GINE message passing with edge-type embeddings.

Node input: one embedding per categorical column of ``x`` (sizes from
``streamguard.graphs.FEATURE_SPEC``), summed. ``layers`` x ``GINEConv``
(torch_geometric): the message from ``j`` to ``i`` is ``ReLU(h_j + e_type)`` with
a learned embedding per edge type *and direction* (every edge is also used
reversed with type ``t + NUM_EDGE_TYPES``, so information flows both ways and
the model knows which way it flows), summed and passed through an MLP; each layer
is residual with LayerNorm and dropout. ``RGCNConv`` (one weight matrix per
relation) was measured about 2x slower on CPU for no gain at this size.
Graph embedding: mean- and max-pool concatenated, projected to ``hidden``
(``embed``); ``forward`` adds a linear head to 2 logits.

Batch: ``{"graph": torch_geometric Batch, "labels": LongTensor[B]}`` from :func:`gnn_collate`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINEConv, global_max_pool, global_mean_pool

from streamguard.config import GNNConfig
from streamguard.graphs import FEATURE_SPEC, NUM_EDGE_TYPES


class GNNClassifier(nn.Module):
    def __init__(self, cfg: GNNConfig):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.embeds = nn.ModuleList(nn.Embedding(n, h) for n in FEATURE_SPEC.values())
        self.edge_embeds = nn.ModuleList(nn.Embedding(2 * NUM_EDGE_TYPES, h) for _ in range(cfg.layers))
        self.convs = nn.ModuleList(GINEConv(nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)), train_eps=True)
                                   for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.head = nn.Linear(h, 2)

    def _node_states(self, g) -> torch.Tensor:
        x = g.x.long()  # no-op for gnn_collate batches; other loaders may pass the shards' compact dtypes
        h = self.embeds[0](x[:, 0])
        for i in range(1, len(self.embeds)):
            h = h + self.embeds[i](x[:, i])
        ei, et = g.edge_index.long(), g.edge_type.long()
        ei = torch.cat([ei, ei.flip(0)], dim=1)
        et = torch.cat([et, et + NUM_EDGE_TYPES])
        for conv, eemb, norm in zip(self.convs, self.edge_embeds, self.norms):
            h = norm(h + self.dropout(torch.relu(conv(h, ei, eemb(et)))))
        return h

    def embed(self, batch: dict) -> torch.Tensor:
        """Pooled graph embedding ``[B, hidden]``."""
        g = batch["graph"]
        h = self._node_states(g)
        b = g.batch if getattr(g, "batch", None) is not None else torch.zeros(h.size(0), dtype=torch.long,
                                                                               device=h.device)
        size = int(g.num_graphs) if hasattr(g, "num_graphs") else 1
        pooled = torch.cat([global_mean_pool(h, b, size), global_max_pool(h, b, size)], dim=-1)
        return self.proj(pooled)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 2]`` from :meth:`embed`'s output (inference scores and embeds with one pass)."""
        return self.head(self.dropout(embedding))

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits ``[B, 2]``."""
        return self.classify(self.embed(batch))


_KEYS = ("x", "edge_index", "edge_type", "y")


def gnn_collate(items: list[Data]) -> dict:
    """``list[Data]`` -> ``{"graph": Batch, "labels": LongTensor[B]}`` (only tensors the model needs).

    Graphs may carry any integer dtype (shards load as int16 ``x``, int32 ``edge_index``, int8 ``edge_type``,
    see :mod:`streamguard.graphs.shards`); the batch always holds int64 ``x``/``edge_index``/``edge_type``:
    the cast happens here, once per batch, instead of once per graph at load time."""
    slim = [Data(x=d.x, edge_index=d.edge_index, edge_type=d.edge_type, y=d.y.view(-1)[:1], num_nodes=d.num_nodes)
            for d in items]
    graph = Batch.from_data_list(slim)
    for key in _KEYS:
        v = graph[key]
        if v.dtype != torch.long:
            graph[key] = v.long()
    return {"graph": graph, "labels": graph.y.view(-1)}
