"""Fusion model: a head over the pooled embeddings of a seed's transformer and GNN.

The two encoders are trained first (their own stages) and frozen here; the
fusion stage embeds every sample once with both and trains this head on the
concatenation. ``forward(batch)`` takes ``batch["features"]`` ``[B, d_t + d_g]``.
"""

from __future__ import annotations

import torch
from torch import nn


class FusionHead(nn.Module):
    def __init__(self, transformer_dim: int, gnn_dim: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.dims = (transformer_dim, gnn_dim)
        # one LayerNorm per branch so neither encoder's scale dominates
        self.norm_t = nn.LayerNorm(transformer_dim)
        self.norm_g = nn.LayerNorm(gnn_dim)
        self.mlp = nn.Sequential(
            nn.Linear(transformer_dim + gnn_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, batch: dict) -> torch.Tensor:
        t, g = batch["features"].split(self.dims, dim=-1)
        return self.mlp(torch.cat([self.norm_t(t), self.norm_g(g)], dim=-1))


def features_collate(items: list[dict]) -> dict:
    return {"features": torch.stack([it["features"] for it in items]),
            "labels": torch.tensor([int(it["labels"]) for it in items], dtype=torch.long)}
