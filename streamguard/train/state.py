"""The engine's progress through one run, typed, and its place in the checkpoint.

A checkpoint (``train/checkpoint.py``) is one dict: the fields of
:class:`TrainState` under their own names, next to ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``lr_info``, ``family``, ``seed`` (and ``rng`` and
``format``, added by the writer). ``to_checkpoint`` / ``from_checkpoint``
convert between the two, so the checkpoint keys are exactly the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class TrainState:
    epoch: int = 0
    """The epoch in progress (the next to run once an epoch ends)."""
    pos: int = 0
    """Batches of ``epoch`` already trained: a resumed run continues at this batch."""
    step: int = 0
    """Optimizer steps so far, over all epochs."""
    best_f1: float = -1.0
    """Best validation F1 so far."""
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    """The model's state dict (on CPU) at ``best_epoch``: what is exported."""
    best_threshold: float = 0.5
    """The decision threshold tuned on validation at ``best_epoch``."""
    bad_epochs: int = 0
    """Epochs since the last improvement (early stopping at ``patience``)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per epoch: train loss, validation F1 / ROC-AUC, threshold, lr, step."""
    done: bool = False
    """Training ended (all epochs, early stop, or the final export); a resume only re-exports."""
    collapse_events: list[dict[str, Any]] = field(default_factory=list)
    """``reduce_lr`` actions taken so far."""

    def to_checkpoint(self) -> dict[str, Any]:
        """The fields as checkpoint entries (same names; values not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "TrainState":
        """The state saved in ``ckpt`` (a checkpoint dict holds every field under its name)."""
        return cls(**{f.name: ckpt[f.name] for f in fields(cls)})
