"""Automatic mixed precision: the decision, the autocast context, the grad scaler, one backward step.

* ``make_amp(device, mode)`` decides: ``mode="auto"`` gives bf16 autocast on CUDA
  where ``torch.cuda.is_bf16_supported()``, else fp16 autocast with a
  ``torch.amp.GradScaler``; off on CPU. ``mode="off"`` disables AMP;
  ``"bf16"``/``"fp16"`` force a precision on CUDA (on CPU they log and stay off).
* ``autocast(ctx)`` is ``torch.autocast`` when AMP is on, a no-op otherwise
  (``ctx`` may be ``None``).
* ``make_scaler(ctx)`` is always a ``torch.amp.GradScaler``; it is disabled (a
  pass-through whose ``state_dict()`` is ``{}``) unless fp16 needs it.
* ``backward_step(loss, optimizer, scaler, params, max_norm)`` does
  ``scaler.scale(loss).backward()``, ``scaler.unscale_(optimizer)``,
  ``clip_grad_norm_`` (on unscaled gradients), ``scaler.step(optimizer)``,
  ``scaler.update()`` -- in that order -- and returns the total gradient norm
  before clipping. With a disabled scaler a non-finite norm skips the optimizer
  step (so NaN gradients never reach the weights), as an enabled scaler does.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, get_args

import torch

from streamguard.config import AmpMode
from streamguard.errors import UserError

log = logging.getLogger(__name__)

AMP_MODES: tuple[str, ...] = get_args(AmpMode)


@dataclass(frozen=True)
class AmpContext:
    """What AMP does on this device: ``enabled``, the autocast ``dtype``, whether fp16 needs a scaler."""

    device_type: str
    enabled: bool
    dtype: torch.dtype | None = None
    use_scaler: bool = False

    @property
    def precision(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"fp32"`` (for metadata)."""
        if not self.enabled:
            return "fp32"
        return "bf16" if self.dtype == torch.bfloat16 else "fp16"


def make_amp(device: torch.device | str, mode: str = "auto") -> AmpContext:
    """Decide AMP for ``device`` from the config value ``mode`` (auto | off | bf16 | fp16)."""
    if mode not in AMP_MODES:
        raise UserError(f"train.amp: unknown value {mode!r} (expected one of {', '.join(AMP_MODES)})")
    dev = torch.device(device)
    if mode == "off":
        ctx = AmpContext(dev.type, False)
    elif dev.type != "cuda":
        if mode != "auto":
            log.info("AMP %s requested on %s: AMP is CUDA-only here, training in fp32", mode, dev)
        ctx = AmpContext(dev.type, False)
    elif mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        ctx = AmpContext("cuda", True, torch.bfloat16, use_scaler=False)
    else:
        ctx = AmpContext("cuda", True, torch.float16, use_scaler=True)
    log.info("AMP on %s: %s%s", dev, ctx.precision, " + GradScaler" if ctx.use_scaler else "")
    return ctx


@contextlib.contextmanager
def autocast(ctx: AmpContext | None) -> Iterator[None]:
    """``torch.autocast`` for an enabled ``ctx``; otherwise nothing."""
    if ctx is None or not ctx.enabled:
        yield
        return
    with torch.autocast(device_type=ctx.device_type, dtype=ctx.dtype):
        yield


def make_scaler(ctx: AmpContext | None, **kwargs) -> torch.amp.GradScaler:
    """A ``GradScaler`` enabled only for fp16 autocast; a disabled one is a pass-through."""
    if ctx is not None and ctx.use_scaler:
        return torch.amp.GradScaler(ctx.device_type, enabled=True, **kwargs)
    return torch.amp.GradScaler("cpu" if ctx is None else ctx.device_type, enabled=False)


def _scaler_enabled(scaler) -> bool:
    is_enabled = getattr(scaler, "is_enabled", None)
    return bool(is_enabled()) if callable(is_enabled) else True


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, params: Iterable[torch.nn.Parameter],
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
