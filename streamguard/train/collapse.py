"""Training-collapse detection, the collapse report, and what to do about it.

``CollapseMonitor.on_step(step, loss, grad_norm)`` flags, returning a reason string:

* a non-finite loss (at once);
* non-finite gradients for ``nonfinite_grad_patience`` steps in a row (an fp16
  ``GradScaler`` skips a few overflowing steps by design, so one is not a collapse;
  ``step.train_step`` never applies a non-finite step, so waiting is safe);
* an exploding gradient norm: above ``grad_factor`` x the running median of the
  last ``window`` norms, ``patience`` steps in a row;
* a loss spike: above ``loss_factor`` x the running mean of the last ``window``
  losses *and* more than ``loss_min_delta`` above it, ``patience`` steps in a row.

Spiking values are kept out of the running statistics, so a diverging run
cannot raise its own reference. After a flag the ratio checks rest for
``cooldown_steps`` so that ``reduce_lr`` gets a chance to work; a run still
spiking after that is flagged again (and ``handle_collapse`` stops it once
the LR reaches ``min_lr``). A normal noisy run does not trip these defaults
(tested).

``CollapseMonitor.on_eval(outputs, preds)`` flags non-finite outputs, a vanishing
spread of the outputs (logit margin or probability std below
``min_output_std``) and, when ``preds`` are given, a single predicted class for
every sample (whether that stops training is the engine's call:
``single_class_is_collapse``).

The thresholds and the action are one config section, ``train.collapse``
(:class:`streamguard.config.CollapseConfig`, where their defaults and docs live).

``handle_collapse(reason, action, optimizer, ...)``: ``stop`` writes
``collapse_report.json`` (atomically; to a path and/or an object store; with
neither it writes nothing: the other ranks of a distributed run) and
raises :class:`CollapseError` (exit code 3); ``reduce_lr`` multiplies every
param group's LR (and a given scheduler's base LRs) by ``lr_factor`` and
returns the event; once the LR would fall below ``min_lr`` it stops instead.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

import numpy as np

from streamguard.config import CollapseAction, CollapseConfig
from streamguard.errors import CollapseError, UserError
from streamguard.jsonio import write_json_atomic

log = logging.getLogger(__name__)

REPORT_NAME = "collapse_report.json"
ACTIONS: tuple[str, ...] = get_args(CollapseAction)

__all__ = ["ACTIONS", "REPORT_NAME", "CollapseConfig", "CollapseMonitor", "handle_collapse", "write_collapse_report"]


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class CollapseMonitor:
    """Watches per-step loss and gradient norm, and evaluation outputs; returns a reason or None."""

    def __init__(self, cfg: CollapseConfig | None = None, **overrides: Any):
        self.cfg = CollapseConfig(**{**(asdict(cfg) if cfg else {}), **overrides})
        self._losses: deque[float] = deque(maxlen=self.cfg.window)
        self._grads: deque[float] = deque(maxlen=self.cfg.window)
        self._recent: deque[dict[str, Any]] = deque(maxlen=self.cfg.recent_size)
        self._loss_spikes = self._grad_spikes = self._nonfinite_grads = 0
        self._cooldown_until = -1
        self.flags: list[dict[str, Any]] = []

    def recent(self) -> list[dict[str, Any]]:
        """The last ``recent_size`` step records (step, loss, grad_norm, reference values)."""
        return list(self._recent)

    def _flag(self, step: int, reason: str) -> str:
        self._loss_spikes = self._grad_spikes = self._nonfinite_grads = 0
        self._cooldown_until = step + self.cfg.cooldown_steps
        self.flags.append({"step": step, "reason": reason})
        log.warning("collapse detected at step %d: %s", step, reason)
        return reason

    def on_step(self, step: int, loss: float, grad_norm: float | None) -> str | None:
        c = self.cfg
        loss = float(loss)
        grad_norm = None if grad_norm is None else float(grad_norm)
        mean = statistics.fmean(self._losses) if self._losses else None
        median = statistics.median(self._grads) if self._grads else None
        self._recent.append({"step": step, "loss": loss, "grad_norm": grad_norm,
                             "loss_mean": mean, "grad_norm_median": median})
        if not math.isfinite(loss):
            return self._flag(step, f"non-finite loss ({loss}) at step {step}")
        resting = step <= self._cooldown_until

        reason = None
        if grad_norm is not None:
            if not math.isfinite(grad_norm):
                self._nonfinite_grads += 1
                if self._nonfinite_grads >= c.nonfinite_grad_patience:
                    return self._flag(step, f"non-finite gradient norm ({grad_norm}) for {self._nonfinite_grads} "
                                            f"consecutive steps (last at step {step})")
            else:
                self._nonfinite_grads = 0
                exploding = (median is not None and len(self._grads) >= c.grad_min_steps
                             and grad_norm > c.grad_factor * max(median, 1e-12))
                if exploding:
                    self._grad_spikes += 0 if resting else 1
                    if self._grad_spikes >= c.patience:
                        reason = (f"exploding gradient norm {grad_norm:.4g} > {c.grad_factor} x running median "
                                  f"{median:.4g} for {self._grad_spikes} consecutive steps (at step {step})")
                else:
                    self._grad_spikes = 0
                    self._grads.append(grad_norm)

        spiking = (mean is not None and len(self._losses) >= c.loss_min_steps
                   and loss > c.loss_factor * mean and loss > mean + c.loss_min_delta)
        if spiking:
            self._loss_spikes += 0 if resting else 1
            if reason is None and self._loss_spikes >= c.patience:
                reason = (f"loss spike {loss:.4g} > {c.loss_factor} x running mean {mean:.4g} "
                          f"for {self._loss_spikes} consecutive steps (at step {step})")
        else:
            self._loss_spikes = 0
            self._losses.append(loss)
        return self._flag(step, reason) if reason else None

    def on_eval(self, outputs: Any, preds: Any = None) -> str | None:
        """Check evaluation outputs: ``[N, 2]`` logits or ``[N]`` probabilities, and predicted classes."""
        c = self.cfg
        out = np.asarray(outputs, dtype=float)
        n = out.shape[0] if out.ndim else 0
        if n < c.min_eval_samples:
            return None
        if not np.all(np.isfinite(out)):
            bad = int((~np.isfinite(out.reshape(n, -1))).any(axis=1).sum())
            return self._eval_flag(f"non-finite model outputs for {bad} of {n} evaluation samples")
        if out.ndim == 2 and out.shape[1] == 2:
            spread, what = float(np.std(out[:, 1] - out[:, 0])), "logit margin"
        elif out.ndim == 2:
            spread, what = float(np.std(out, axis=0).max()), "logits"
        else:
            spread, what = float(np.std(out.reshape(n, -1), axis=0).max()), "probability"
        if spread < c.min_output_std:
            return self._eval_flag(f"vanishing output variance: {what} std {spread:.3g} < {c.min_output_std:g} "
                                   f"over {n} samples (the model ignores its input)")
        if preds is not None:
            p = np.asarray(preds).reshape(-1)
            classes = np.unique(p)
            if len(p) >= c.min_eval_samples and len(classes) == 1:
                return self._eval_flag(f"single predicted class: all {len(p)} evaluation samples predicted "
                                       f"{classes[0].item()}")
        return None

    def _eval_flag(self, reason: str) -> str:
        self.flags.append({"step": None, "reason": reason})
        log.warning("collapse detected on evaluation: %s", reason)
        return reason


def _jsonable(obj: Any) -> Any:
    """Plain JSON: non-finite floats become the strings "nan"/"inf"/"-inf" (strict parsers reject NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, deque)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def write_collapse_report(path: str | os.PathLike | None = None, *, reason: str, step: int | None = None,
                          epoch: int | None = None, history: list | None = None, store: Any = None,
                          key: str | None = None, **extra: Any) -> str:
    """Write ``collapse_report.json`` atomically; returns where (the file path, else ``store.uri + key``).

    ``path`` is the file, or a directory (the file is put inside it). ``store``
    + ``key`` also (or instead) write it to an object store.
    """
    if path is None and store is None:
        raise ValueError("write_collapse_report: give a path, a store and key, or both")
    report = _jsonable({"reason": reason, "step": step, "epoch": epoch, "history": list(history or []),
                        "created_at": time.time(), **extra})
    where = None
    if path is not None:
        p = Path(path)
        if p.is_dir() or p.suffix != ".json":
            p = p / REPORT_NAME
        write_json_atomic(p, report)
        where = str(p)
    if store is not None:
        from streamguard.storage import put_json

        key = key or REPORT_NAME
        put_json(store, key, report)
        where = where or f"{getattr(store, 'uri', 'store')}/{key}"
    log.info("collapse report written to %s", where)
    return where


def handle_collapse(reason: str, action: str, optimizer: Any, *, report_path: str | os.PathLike | None = None,
                    store: Any = None, store_key: str | None = None, step: int | None = None,
                    epoch: int | None = None, history: list | None = None,
                    lr_factor: float = CollapseConfig.lr_factor, min_lr: float = CollapseConfig.min_lr,
                    scheduler: Any = None, **extra: Any) -> dict[str, Any]:
    """Act on a collapse: ``stop`` (report + raise CollapseError) or ``reduce_lr`` (returns the event).

    Pass the LR ``scheduler`` when there is one: schedulers such as ``LambdaLR``
    recompute the LR from their ``base_lrs`` every step, so lowering only the
    optimizer's LR would be undone by the next ``scheduler.step()``.
    """
    if action not in ACTIONS:
        raise UserError(f"train.collapse.action: unknown value {action!r} (expected one of {', '.join(ACTIONS)})")
    groups = list(getattr(optimizer, "param_groups", []) or [])
    before = [float(g["lr"]) for g in groups]
    if action == "reduce_lr":
        after = [lr * lr_factor for lr in before]
        if after and max(after) >= min_lr:
            for g, lr in zip(groups, after):
                g["lr"] = lr
                if "initial_lr" in g:
                    g["initial_lr"] *= lr_factor
            if scheduler is not None and hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [b * lr_factor for b in scheduler.base_lrs]
            log.warning("collapse at step %s (epoch %s): %s -> lr x %g: %s -> %s", step, epoch, reason, lr_factor,
                        _fmt(before), _fmt(after))
            return {"action": "reduce_lr", "reason": reason, "step": step, "epoch": epoch,
                    "lr_before": before, "lr_after": after}
        reason = f"{reason}; lr {_fmt(before)} cannot be reduced further (min_lr {min_lr:g})"
    where = None  # neither a path nor a store: another process writes the report (rank 0 of a distributed run)
    if report_path is not None or store is not None:
        where = write_collapse_report(report_path, reason=reason, step=step, epoch=epoch, history=history,
                                      store=store, key=store_key, action="stop", requested_action=action, lr=before,
                                      **extra)
    log.error("training collapsed at step %s (epoch %s): %s", step, epoch, reason)
    err = CollapseError(f"training collapsed at step {step} (epoch {epoch}): {reason}"
                        + (f" (report: {where})" if where else ""))
    err.report_path = where
    raise err


def _fmt(lrs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.3g}" for x in lrs) + "]"
