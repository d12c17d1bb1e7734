"""Automatic mixed precision: the decision, the autocast context, the grad scaler.

* ``make_amp(device, mode)`` decides: ``mode="auto"`` gives bf16 autocast on CUDA
  where ``torch.cuda.is_bf16_supported()``, else fp16 autocast with a
  ``torch.amp.GradScaler``; off on CPU. ``mode="off"`` disables AMP;
  ``"bf16"``/``"fp16"`` force a precision on CUDA (on CPU they log and stay off).
* ``autocast(ctx)`` is ``torch.autocast`` when AMP is on, a no-op otherwise
  (``ctx`` may be ``None``).
* ``make_scaler(ctx)`` is always a ``torch.amp.GradScaler``; it is disabled (a
  pass-through whose ``state_dict()`` is ``{}``) unless fp16 needs it.

The training step that uses the scaler (scale, backward, unscale, clip, step,
update) is :func:`streamguard.train.step.train_step`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, get_args

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
