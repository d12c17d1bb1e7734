"""Tiny models and data for the train safety-module tests (model(batch) -> logits [B, 2])."""

from __future__ import annotations

import torch
from torch import nn


class RecordingScaler:
    """Wraps a real GradScaler and records its calls in ``calls`` (``train_step`` calls clip in between)."""

    def __init__(self, inner: torch.amp.GradScaler, calls: list[str]):
        self.inner, self.calls = inner, calls

    def is_enabled(self):
        return self.inner.is_enabled()

    def scale(self, loss):
        self.calls.append("scale")
        return self.inner.scale(loss)

    def unscale_(self, opt):
        self.calls.append("unscale_")
        return self.inner.unscale_(opt)

    def step(self, opt):
        self.calls.append("step")
        return self.inner.step(opt)

    def update(self):
        self.calls.append("update")
        return self.inner.update()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.calls.append("load_state_dict")
        return self.inner.load_state_dict(state)

class MLP(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["x"])


class Constant(nn.Module):
    """Ignores its input: the same logits for every sample."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.bias.expand(batch["x"].shape[0], 2)


def separable(n: int = 256, d: int = 8, seed: int = 0, batch_size: int = 32, random_labels: bool = False) -> list[dict]:
    """Two Gaussian blobs (linearly separable with margin), as a list of batch dicts."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    x[:, 0] += torch.where(y == 1, 3.0, -3.0)
    if random_labels:
        y = torch.randint(0, 2, (n,), generator=g)
    return [{"x": x[i:i + batch_size], "labels": y[i:i + batch_size]} for i in range(0, n, batch_size)]
