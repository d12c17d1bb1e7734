"""Learning-rate range test (Smith 2015; the fastai / torch-lr-finder recipe).

``find_lr`` trains a fresh optimizer (from ``make_optimizer``) on the caller's
model while the learning rate grows exponentially from ``start_lr`` to
``end_lr`` (``torch.optim.lr_scheduler.ExponentialLR``), records the
bias-corrected exponential moving average of the loss, stops when that
smoothed loss exceeds ``diverge_factor`` x its best value or a loss is
non-finite, and suggests a learning rate from the smoothed curve, clamped to
``lr_range``: ``steepest`` descent (minimum of d smoothed-loss / d log lr, on
the curve up to its lowest point) or ``valley`` (fastai's default since 2.5:
half-way along the longest stretch where the loss keeps falling; less moved by
the noise of a short sweep).

Each step is the training step (``step.train_step``: the caller's AMP grad
scaler scales the loss, gradients are unscaled and clipped at ``max_norm``
before the optimizer steps), so an fp16 sweep is loss-scaled like training.
Afterwards the model's parameters and buffers, its gradients, its train/eval
modes, the scaler's state and the Python, NumPy and torch (CPU and CUDA) RNG
states are exactly what they were before, so the sweep leaves no trace on training.

Any failure -- an exception, too few points, no descent, a non-finite
suggestion -- returns ``fallback_lr`` with ``source="fallback"`` and the reason,
and logs a warning; it never raises (except when restoring the model fails).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from streamguard.train.interface import loss_fn, move_to
from streamguard.train.step import train_step

log = logging.getLogger(__name__)

MakeOptimizer = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


@dataclass
class LRFinderResult:
    lr: float
    """The learning rate to train with (the clamped suggestion, or the fallback)."""
    source: str
    """``finder`` or ``fallback``."""
    reason: str | None
    """Why the fallback was used, or a note on the suggestion (clamped); None otherwise."""
    lrs: list[float]
    """Learning rate of each recorded step."""
    losses: list[float]
    """Smoothed loss of each recorded step."""
    suggested: float | None = None
    """The unclamped steepest-descent learning rate (None when there was none)."""
    stopped: str | None = None
    """Why the sweep stopped early (divergence, non-finite loss), None when it ran all steps."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch_stream(batches: Any) -> Iterator[dict]:
    """Cycle ``batches``: a callable returning an iterator, a re-iterable, or a one-shot iterator (cached)."""
    if callable(batches):
        make = batches
    elif iter(batches) is batches:  # one-shot iterator: remember what it gave, then replay that
        seen: list = []

        def make():
            if not seen:
                for b in batches:
                    seen.append(b)
                    yield b
            else:
                yield from seen
    else:
        def make():
            return iter(batches)
    while True:
        empty = True
        for b in make():
            empty = False
            yield b
        if empty:
            raise ValueError("the batch source yielded no batches")


class _Snapshot:
    """Exact copy of a model's state, gradients, modes, an enabled scaler's state and all RNG states;
    ``restore()`` puts them back."""

    def __init__(self, model: nn.Module, scaler: Any = None):
        self.model = model
        enabled = scaler is not None and getattr(scaler, "is_enabled", lambda: False)()
        self.scaler, self.scaler_state = (scaler, scaler.state_dict()) if enabled else (None, None)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.py = random.getstate()
        self.np = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = (torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
                     else None)

    def restore(self) -> None:
        self.model.load_state_dict(self.state)
        for p, g in self.grads:
            p.grad = g
        for m, training in self.modes:
            m.training = training
        if self.scaler is not None:
            self.scaler.load_state_dict(self.scaler_state)
        random.setstate(self.py)
        np.random.set_state(self.np)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def steepest_descent(lrs: list[float], losses: list[float], skip_start: int = 0, skip_end: int = 0,
                     min_points: int = 5) -> tuple[float | None, str | None]:
    """The lr where the smoothed loss falls fastest against log(lr), up to its lowest point (a fall after the
    minimum is the recovery from a spike, not a rate to train at); (None, reason) when there is none."""
    end = len(lrs) - skip_end
    x, y = np.log(np.asarray(lrs[skip_start:end], dtype=float)), np.asarray(losses[skip_start:end], dtype=float)
    if len(x) < max(2, min_points):
        return None, (f"too few points ({len(x)} usable after skipping {skip_start} + {skip_end}, "
                      f"need {max(2, min_points)})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None, "non-finite losses in the sweep"
    lowest = int(np.argmin(y))
    if lowest == 0:
        return None, "the loss never decreased during the sweep"
    grad = np.gradient(y[:lowest + 1], x[:lowest + 1])
    i = int(np.argmin(grad))
    if not grad[i] < -1e-4 * max(float(np.abs(y).max()), 1e-12):  # float noise on a flat curve is not descent
        return None, "the loss never decreased during the sweep"
    return float(lrs[skip_start + i]), None


def valley(lrs: list[float], losses: list[float], skip_start: int = 0, skip_end: int = 0,
           min_points: int = 5) -> tuple[float | None, str | None]:
    """fastai's "valley" rule (fastai >= 2.5's default suggestion, fastai/fastai#3377): the longest stretch
    over which the smoothed loss keeps falling (its longest decreasing subsequence), and the lr half-way
    along it. Noise on a short sweep moves the steepest point a lot and this valley little;
    (None, reason) when there is none."""
    end = len(lrs) - skip_end
    y = np.asarray(losses[skip_start:end], dtype=float)
    if len(y) < max(2, min_points):
        return None, (f"too few points ({len(y)} usable after skipping {skip_start} + {skip_end}, "
                      f"need {max(2, min_points)})")
    if not np.all(np.isfinite(y)):
        return None, "non-finite losses in the sweep"
    n = len(y)
    run = np.ones(n, dtype=int)  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        higher = run[:i][y[:i] > y[i]]
        if higher.size:
            run[i] = higher.max() + 1
    last = int(np.argmax(run))
    first = max(last - int(run[last]), 0)  # as fastai: the valley is the run's length back from its lowest point
    if not y[first] - y[last] > 1e-4 * max(float(np.abs(y).max()), 1e-12):  # float noise: no valley
        return None, "the loss never decreased during the sweep"
    third = (last - first) / 3
    return float(lrs[skip_start + first + int(third) + int(third / 2)]), None


SUGGESTIONS = {"valley": valley, "steepest": steepest_descent}
"""The rules that turn a sweep into a learning rate (``find_lr(suggest=...)``, ``train.lr_finder_rule``)."""


def find_lr(model: nn.Module, make_optimizer: MakeOptimizer, batches: Any, *,
            loss: Callable = loss_fn, steps: int = 100, start_lr: float = 1e-7, end_lr: float = 10.0,
            lr_range: tuple[float, float] | None = (1e-5, 1e-2), fallback_lr: float = 1e-3,
            smooth: float = 0.05, diverge_factor: float = 4.0, device: torch.device | str = "cpu",
            max_norm: float | None = None, scaler: Any = None, skip_start: int | None = None, skip_end: int = 0,
            suggest: str = "steepest",
            min_points: int = 5) -> LRFinderResult:
    """Exponential LR sweep over ``steps`` batches; the LR that ``suggest`` picks from it (``steepest``
    descent or fastai's ``valley``, :data:`SUGGESTIONS`), clamped to ``lr_range``.

    ``batches``: a re-iterable of batch dicts, a callable returning an iterator,
    or a one-shot iterator; it is cycled when exhausted. ``loss(model, batch)``
    returns a scalar tensor or a ``(loss, logits)`` tuple (like ``interface.loss_fn``).
    ``max_norm`` clips gradients and ``scaler`` (an AMP ``GradScaler``; None: a
    disabled one) scales the loss as in training -- the engine passes its own
    scaler and ``grad_clip``; the scaler's state is restored afterwards. ``skip_start`` (default
    ``steps // 10``) ignores the first points, where the moving average is
    still settling. Quick mode is ``steps=100``.
    """
    lrs: list[float] = []
    losses: list[float] = []
    stopped: str | None = None

    def fallback(reason: str) -> LRFinderResult:
        log.warning("LR finder failed (%s): using fallback lr %.3g", reason, fallback_lr)
        return LRFinderResult(float(fallback_lr), "fallback", reason, lrs, losses, stopped=stopped)

    snap = _Snapshot(model, scaler)
    try:
        if suggest not in SUGGESTIONS:
            raise ValueError(f"suggest={suggest!r}: expected one of {', '.join(SUGGESTIONS)}")
        if steps < 2 or not (0 < start_lr < end_lr) or not (0 < smooth <= 1):
            raise ValueError(f"bad sweep settings: steps={steps}, start_lr={start_lr}, end_lr={end_lr}, "
                             f"smooth={smooth}")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, start_lr)
        for g in optimizer.param_groups:
            g["lr"] = start_lr
        gamma = (end_lr / start_lr) ** (1.0 / (steps - 1))
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        stream = _batch_stream(batches)
        model.train()
        avg, best = 0.0, math.inf
        for i in range(steps):
            lr = float(optimizer.param_groups[0]["lr"])
            batch = move_to(next(stream), device)
            optimizer.zero_grad(set_to_none=True)
            out = loss(model, batch)
            value = out[0] if isinstance(out, (tuple, list)) else out
            raw = float(value.detach())
            if not math.isfinite(raw):
                stopped = f"non-finite loss at step {i} (lr {lr:.3g})"
                break
            avg = (1 - smooth) * avg + smooth * raw
            smoothed = avg / (1 - (1 - smooth) ** (i + 1))
            if smoothed > diverge_factor * best:
                stopped = (f"diverged at step {i} (lr {lr:.3g}): smoothed loss {smoothed:.4g} > "
                           f"{diverge_factor} x best {best:.4g}")
                break
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            train_step(value, optimizer, scaler, params, max_norm)
            scheduler.step()
        if stopped:
            log.info("LR finder: %s", stopped)
        skip = steps // 10 if skip_start is None else skip_start
        suggested, why = SUGGESTIONS[suggest](lrs, losses, skip, skip_end, min_points)
        if suggested is None:
            return fallback(why + (f"; {stopped}" if stopped else ""))
        if not (math.isfinite(suggested) and suggested > 0):
            return fallback(f"non-finite suggestion {suggested}")
        lr, note = suggested, None
        if lr_range is not None:
            lo, hi = lr_range
            lr = min(max(suggested, lo), hi)
            if lr != suggested:
                note = f"suggested lr {suggested:.3g} clamped to [{lo:.3g}, {hi:.3g}]"
        log.info("LR finder: lr %.3g (%s %.3g, %d points%s)", lr, suggest, suggested, len(lrs),
                 f", {stopped}" if stopped else "")
        return LRFinderResult(float(lr), "finder", note, lrs, losses, suggested=suggested, stopped=stopped)
    except Exception as e:  # any failure of the sweep means: train with the fallback
        log.debug("LR finder crashed", exc_info=True)
        return fallback(f"{type(e).__name__}: {e}".splitlines()[0])
    finally:
        snap.restore()
