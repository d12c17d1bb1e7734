"""The one training step, shared by the engine, the LR finder and the probes.

``train_step(loss, optimizer, scaler, params, max_norm)`` does
``scaler.scale(loss).backward()``, ``scaler.unscale_(optimizer)``,
``clip_grad_norm_`` (on the unscaled gradients), ``scaler.step(optimizer)``,
``scaler.update()`` -- in that order -- and returns the total gradient norm
before clipping. With a disabled scaler (``amp.make_scaler`` off fp16, or
``None``) a non-finite norm skips the optimizer step, so NaN gradients never
reach the weights, as an enabled scaler does. Pre-flight's
``safety_amp_order`` check certifies this function.

``make_optimizer(params, lr, weight_decay)`` is the optimizer every caller of
the step uses (AdamW).
"""

from __future__ import annotations

import logging
import math
from typing import Iterable

import torch

from streamguard.train.amp import make_scaler

log = logging.getLogger(__name__)


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _scaler_enabled(scaler) -> bool:
    is_enabled = getattr(scaler, "is_enabled", None)
    return bool(is_enabled()) if callable(is_enabled) else True


def train_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, params: Iterable[torch.nn.Parameter],
               max_norm: float | None) -> float:
    """Backward, unscale, clip, step, update (in that order); return the pre-clip total gradient norm.

    ``max_norm`` None or <= 0 measures the norm without clipping. ``scaler`` None
    means a disabled scaler. The norm may be ``inf``/``nan``: with an enabled
    scaler that step is skipped by the scaler (and the scale lowered); with a
    disabled one this function skips ``optimizer.step()`` itself and logs it.
    """
    if scaler is None:
        scaler = make_scaler(None)
    params = [p for p in params]
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    limit = float(max_norm) if max_norm is not None and max_norm > 0 else math.inf
    norm = float(torch.nn.utils.clip_grad_norm_(params, limit, error_if_nonfinite=False))
    if math.isfinite(norm) or _scaler_enabled(scaler):
        scaler.step(optimizer)
    else:
        log.warning("non-finite gradient norm (%s): optimizer step skipped", norm)
    scaler.update()
    return norm
