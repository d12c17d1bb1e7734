"""GNN over StreamGuard program graphs: relational GCN with typed edges.

Node input: one embedding per categorical column of ``x`` (sizes from
``streamguard.graphs.FEATURE_SPEC``), summed. ``layers`` x ``RGCNConv``
(torch_geometric) with ``2 * NUM_EDGE_TYPES`` relations: every edge type in its
own direction and reversed, so information flows both ways with a weight per
type and direction; each layer is residual with LayerNorm, ReLU and dropout.
Graph embedding: mean- and max-pool concatenated, projected to ``hidden``
(``embed``); ``forward`` adds a linear head to 2 logits.

Batch: ``{"graph": torch_geometric Batch, "labels": LongTensor[B]}`` from :func:`gnn_collate`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import RGCNConv, global_max_pool, global_mean_pool

from streamguard.config import GNNConfig
from streamguard.graphs import FEATURE_SPEC, NUM_EDGE_TYPES


class GNNClassifier(nn.Module):
    def __init__(self, cfg: GNNConfig):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.embeds = nn.ModuleList(nn.Embedding(n, h) for n in FEATURE_SPEC.values())
        self.convs = nn.ModuleList(RGCNConv(h, h, num_relations=2 * NUM_EDGE_TYPES, aggr="mean")
                                   for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.head = nn.Linear(h, 2)

    def _node_states(self, g) -> torch.Tensor:
        x = g.x
        h = self.embeds[0](x[:, 0])
        for i in range(1, len(self.embeds)):
            h = h + self.embeds[i](x[:, i])
        ei, et = g.edge_index, g.edge_type
        ei = torch.cat([ei, ei.flip(0)], dim=1)
        et = torch.cat([et, et + NUM_EDGE_TYPES])
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + self.dropout(torch.relu(conv(h, ei, et))))
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

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits ``[B, 2]``."""
        return self.head(self.dropout(self.embed(batch)))


_KEYS = ("x", "edge_index", "edge_type", "y")


def gnn_collate(items: list[Data]) -> dict:
    """``list[Data]`` -> ``{"graph": Batch, "labels": LongTensor[B]}`` (only tensors the model needs)."""
    slim = [Data(x=d.x, edge_index=d.edge_index, edge_type=d.edge_type, y=d.y.view(-1)[:1], num_nodes=d.num_nodes)
            for d in items]
    graph = Batch.from_data_list(slim)
    return {"graph": graph, "labels": graph.y.view(-1).long()}
