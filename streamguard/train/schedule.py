"""What a training run follows step by step, as pure functions of its settings: the RNG seeding, the batch
order of each epoch (a pure function of (seed, epoch), so a resumed run replays the same batches) and the LR
schedule. Used by the engine (``streamguard.train.engine``, which re-exports ``seed_everything`` and
``epoch_batches``).
"""

from __future__ import annotations

import os
import random
from typing import Sequence

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, lengths: Sequence[int] | None = None,
                  bucket_batches: int = 50) -> list[list[int]]:
    """The shuffled batch index lists of one epoch: a pure function of (seed, epoch).

    With ``lengths`` (e.g. token counts) items are bucketed: the shuffled order is
    cut into windows of ``bucket_batches`` batches, each window sorted by length and
    cut into batches, and the batch order shuffled again — so a batch holds items of
    similar length (less padding) while every epoch still sees a fresh random order.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    if lengths is None:
        return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    window = batch_size * bucket_batches
    batches = []
    for w in range(0, n, window):
        chunk = sorted(perm[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


def linear_schedule(optimizer, total_steps: int, warmup_share: float = 0.06):
    warmup = max(1, int(total_steps * warmup_share))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.05, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
