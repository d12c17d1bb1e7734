"""The model/batch interface shared by the engine, LR finder, probes and models."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor (and PyG Batch/Data) in a nested batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    if hasattr(batch, "to") and callable(batch.to):  # torch_geometric Data/Batch
        return batch.to(device)
    return batch


def loss_fn(model: torch.nn.Module, batch: dict, class_weights: torch.Tensor | None = None, *,
            weight_sum: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cross-entropy of ``model(batch)`` against ``batch['labels']``; returns (loss, logits).

    The loss is the weighted mean over the batch; with ``weight_sum`` it is the weighted *sum* divided by
    ``weight_sum`` instead: a data-parallel rank's part of the mean over a global batch it holds a shard of.
    """
    logits = model(batch)
    w = class_weights.to(logits.device, logits.dtype).float() if class_weights is not None else None
    if weight_sum is None:
        return F.cross_entropy(logits.float(), batch["labels"], weight=w), logits
    return F.cross_entropy(logits.float(), batch["labels"], weight=w, reduction="sum") / weight_sum, logits


def class_weights_from_labels(labels) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced set gets [1, 1]."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    counts = torch.bincount(y, minlength=2).float().clamp(min=1)
    return counts.sum() / (2 * counts)
