"""Fusion model: the better branch plus a correction learned on held-out data (a gated stacker).

Inputs (``batch["features"]`` ``[B, 2 (+ d_t + d_g)]``): the logit margins
``z = logit_vulnerable - logit_safe`` of the seed's trained transformer and GNN
(in that order), then -- with ``embeddings`` -- their pooled embeddings. The
fusion's logit margin is

    s(x) = z_anchor(x) + w . z(x) + b  [+ mlp(LayerNorm(e_t), LayerNorm(e_g))]

``anchor`` is the branch that was better on validation. The correction (``w``,
``b``, the MLP's last layer) starts at zero, so the untrained head *is* the
anchor branch, and weight decay pulls it back there: where the other branch adds
nothing, the fusion stays at (falls back to) its better branch.

Cross-fitting: the head is trained on the validation split, which neither
branch has fitted (on the training split a branch's logits are over-confident,
and a head trained there learns to trust them more than held-out data warrants).
There are ``folds`` copies of the correction; copy ``k`` never trains on fold
``k``. A row's ``batch["head"]`` says which copy scores it: training rows name
a copy that may learn from them, validation rows their own fold's copy (an
out-of-fold prediction: the engine tunes the threshold and picks the epoch on
data the scoring copy has not seen), and ``-1`` (or no ``head`` key: inference)
the mean of all copies.
"""

from __future__ import annotations

import torch
from torch import nn

BRANCHES = ("transformer", "gnn")
"""The order of the branch margins in ``features``."""


class FusionHead(nn.Module):
    def __init__(self, transformer_dim: int, gnn_dim: int, hidden: int = 128, dropout: float = 0.1, *,
                 anchor: int = 1, folds: int = 5, embeddings: bool = False):
        super().__init__()
        if anchor not in range(len(BRANCHES)):
            raise ValueError(f"anchor {anchor}: expected a branch index 0..{len(BRANCHES) - 1}")
        self.dims = (transformer_dim, gnn_dim)
        self.anchor, self.folds, self.embeddings = int(anchor), max(1, int(folds)), bool(embeddings)
        n = len(BRANCHES)
        self.w = nn.Parameter(torch.zeros(self.folds, n))
        self.b = nn.Parameter(torch.zeros(self.folds))
        if self.embeddings:
            self.norm_t = nn.LayerNorm(transformer_dim)
            self.norm_g = nn.LayerNorm(gnn_dim)
            self.mlp = nn.ModuleList(self._mlp(transformer_dim + gnn_dim, hidden, dropout) for _ in range(self.folds))

    @staticmethod
    def _mlp(width: int, hidden: int, dropout: float) -> nn.Sequential:
        mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        nn.init.zeros_(mlp[-1].weight)  # the correction starts at zero: the untrained head is the anchor branch
        nn.init.zeros_(mlp[-1].bias)
        return mlp

    @property
    def n_features(self) -> int:
        return len(BRANCHES) + (sum(self.dims) if self.embeddings else 0)

    def margins(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, folds]``: every copy's fused logit margin."""
        z = features[:, :len(BRANCHES)]
        out = z[:, self.anchor:self.anchor + 1] + z @ self.w.T + self.b
        if self.embeddings:
            t, g = features[:, len(BRANCHES):].split(self.dims, dim=-1)
            e = torch.cat([self.norm_t(t), self.norm_g(g)], dim=-1)
            out = out + torch.cat([m(e) for m in self.mlp], dim=-1)
        return out

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits ``[B, 2]`` (``[-s/2, s/2]``: softmax gives ``sigmoid(s)``) of the copy each row names."""
        m = self.margins(batch["features"])
        head = batch.get("head")
        if head is None:
            s = m.mean(dim=-1)
        else:
            mine = m.gather(1, head.clamp(min=0).view(-1, 1)).squeeze(1)
            s = torch.where(head >= 0, mine, m.mean(dim=-1))
        return torch.stack([-s / 2, s / 2], dim=-1)


def features_collate(items: list[dict]) -> dict:
    out = {"features": torch.stack([it["features"] for it in items]),
           "labels": torch.tensor([int(it["labels"]) for it in items], dtype=torch.long)}
    if any("head" in it for it in items):
        out["head"] = torch.tensor([int(it.get("head", -1)) for it in items], dtype=torch.long)
    return out
