"""Pre-training probes: can the model learn at all (tiny overfit), does one step fit in memory.

Both are pure library functions returning JSON-ready dicts; the pre-flight stage
and the tests call them. Neither changes the caller's model (weights,
gradients, train/eval mode) nor the global RNG streams.

* ``tiny_overfit`` trains a deep copy on a few batches (the issue's recipe: 32
  samples, 50 steps) with the training step (``step.train_step``: AMP scaler,
  unscale, clip) and optimizer (``step.make_optimizer``) and passes when the
  final loss is below ``max_final_loss`` (0.5) and at least ``min_reduction``
  (70 %) below the first. Those losses are the probe's own reference -- plain
  cross-entropy of ``model(batch)`` against ``batch["labels"]``, in eval mode
  over all the batches, before and after training -- not the training loss, so
  a training loss that ignores the labels fails. A model with frozen parameters
  (``requires_grad`` off: a frozen head) or whose weights do not move fails too.
* ``memory_test`` runs forward + the training step's backward and clip on one
  batch at the configured batch size and sequence length (with an optimizer
  that does not move the weights) and compares the peak memory, plus an estimate of
  the optimizer state (``optimizer_state_factor`` x trainable parameter bytes;
  2 for AdamW), with the total: on CUDA the peak allocated bytes vs the device's
  memory; on CPU the peak RSS of this process vs the physical memory or the
  cgroup limit, whichever is smaller. ``passed = share <= limit_share``; an
  out-of-memory error is a failed result, not an exception.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import resource
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from streamguard.train import amp as amp_mod
from streamguard.train.interface import loss_fn, move_to
from streamguard.train.step import make_optimizer as default_optimizer
from streamguard.train.step import train_step

log = logging.getLogger(__name__)


@contextlib.contextmanager
def preserved_rng(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block without advancing the Python, NumPy or torch (CPU, and ``device``'s CUDA) RNG streams."""
    dev = torch.device(device)
    py, npy = random.getstate(), np.random.get_state()
    cuda = [dev] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _loss_value(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def reference_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The probe's yardstick: unweighted cross-entropy of ``model(batch)`` against ``batch["labels"]``."""
    return torch.nn.functional.cross_entropy(model(batch).float(), batch["labels"])


@torch.no_grad()
def _mean_loss(model: nn.Module, batches: list[dict], amp_ctx: Any) -> tuple[float, float]:
    """Mean reference loss and accuracy over ``batches`` (eval mode)."""
    model.eval()
    total, n, right, items = 0.0, 0, 0, 0
    for b in batches:
        with amp_mod.autocast(amp_ctx):
            logits = model(b).float()
        total += float(torch.nn.functional.cross_entropy(logits, b["labels"]))
        n += 1
        right += int((logits.argmax(-1) == b["labels"]).sum())
        items += int(b["labels"].numel())
    return total / max(n, 1), right / max(items, 1)


def tiny_overfit(model: nn.Module, batches: list[dict], *, steps: int = 50, lr: float = 1e-3,
                 loss: Callable = loss_fn, device: torch.device | str = "cpu",
                 make_optimizer: Callable[[Any, float], torch.optim.Optimizer] | None = None,
                 amp_ctx: Any = None, max_norm: float | None = 1.0, max_final_loss: float = 0.5,
                 min_reduction: float = 0.7) -> dict[str, Any]:
    """Train a deep copy of ``model`` for ``steps`` steps cycling over ``batches``; did the loss collapse to ~0?

    ``loss(model, batch)`` is the training loss (default: the engine's ``loss_fn``); pass/fail is judged on
    :func:`reference_loss`. Returns ``first_loss``, ``final_loss``, ``reduction`` (1 - final/first),
    ``accuracy`` (after training), ``steps``, ``passed``, ``seconds``, plus ``lr``, ``batches``, ``samples``,
    ``train_losses`` (per step, the training loss), ``frozen`` (names of parameters with ``requires_grad``
    off), ``weights_changed`` and ``reason`` (why it failed; None when passed).
    ``make_optimizer(params, lr)`` defaults to the training optimizer (``step.make_optimizer``) without
    weight decay. Each step is ``step.train_step`` with a grad scaler for ``amp_ctx`` and ``max_norm``.
    """
    t0 = time.time()
    if not batches:
        raise ValueError("tiny_overfit: no batches")
    dev = torch.device(device)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    with preserved_rng(dev):
        m = copy.deepcopy(model).to(dev)
        data = [move_to(b, dev) for b in batches]
        params = [p for p in m.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        for p in params:
            p.grad = None
        first, _ = _mean_loss(m, data, amp_ctx)
        train_losses: list[float] = []
        if params:
            opt = (make_optimizer or default_optimizer)(params, lr)
            scaler = amp_mod.make_scaler(amp_ctx)
            m.train()
            for i in range(steps):
                opt.zero_grad(set_to_none=True)
                with amp_mod.autocast(amp_ctx):
                    value = _loss_value(loss(m, data[i % len(data)]))
                train_losses.append(float(value.detach()))
                if not math.isfinite(train_losses[-1]):
                    break
                train_step(value, opt, scaler, params, max_norm)
            del opt
        final, accuracy = _mean_loss(m, data, amp_ctx)
        changed = any(not torch.equal(b, p.detach()) for b, p in zip(before, params))
        del m, before
    finite = math.isfinite(first) and math.isfinite(final) and all(math.isfinite(x) for x in train_losses)
    reduction = 1.0 - final / first if finite and first > 0 else 0.0
    reasons = []
    if frozen:
        reasons.append(f"{len(frozen)} parameter tensor(s) frozen (requires_grad off), e.g. {frozen[0]}")
    if not changed:
        reasons.append("the weights did not change" + (" (no trainable parameters)" if not params else ""))
    if not finite:
        bad = next((x for x in train_losses if not math.isfinite(x)), None)
        reasons.append(f"non-finite loss (first {first}, final {final}" + (f", training loss {bad})" if bad is not None
                                                                              else ")"))
    else:
        if not final < max_final_loss:
            reasons.append(f"final loss {final:.4g} >= {max_final_loss}")
        if not reduction >= min_reduction:
            reasons.append(f"loss reduced by {reduction:.1%} < {min_reduction:.0%}")
    passed = not reasons
    result = {
        "first_loss": first if math.isfinite(first) else str(first),
        "final_loss": final if math.isfinite(final) else str(final),
        "reduction": reduction, "accuracy": accuracy, "steps": steps, "passed": passed,
        "seconds": round(time.time() - t0, 3), "frozen": frozen[:20], "weights_changed": changed,
        "lr": lr, "batches": len(batches), "samples": sum(_batch_size(b) or 0 for b in batches),
        "train_losses": [x if math.isfinite(x) else str(x) for x in train_losses],
        "reason": "; ".join(reasons) or None,
    }
    (log.info if passed else log.warning)("tiny overfit %s: loss %.4g -> %.4g (%.0f%% reduction) in %d steps%s",
                                          "passed" if passed else "FAILED", first, final, 100 * reduction, steps,
                                          f" ({result['reason']})" if reasons else "")
    return result


def _batch_size(batch: Any) -> int | None:
    labels = batch.get("labels") if isinstance(batch, dict) else None
    return int(labels.shape[0]) if isinstance(labels, torch.Tensor) and labels.ndim else None


# ---------------------------------------------------------------- memory


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) is not a number


def system_memory_bytes() -> tuple[int, str]:
    """Usable memory of this process: min(physical, cgroup v2/v1 limit), and where it came from."""
    try:
        import psutil

        total, source = int(psutil.virtual_memory().total), "physical"
    except ImportError:
        total, source = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical"
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        limit = _read_int(path)
        if limit is not None and 0 < limit < total:
            total, source = limit, f"cgroup ({path})"
    return total, source


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: '5' to /proc/self/clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes(reset_ok: bool) -> tuple[int, str]:
    if reset_ok:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM since reset"
        except OSError:
            pass
    # ru_maxrss: kilobytes on Linux, bytes on macOS; the lifetime peak (an over-estimate)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return (rss if sys.platform == "darwin" else rss * 1024), "ru_maxrss (process lifetime)"


class _NoUpdate(torch.optim.Optimizer):
    """An optimizer whose step changes nothing: the memory probe runs the training step's backward, unscale and
    clip without moving the weights (the optimizer's own state is estimated, see ``optimizer_state_factor``)."""

    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure=None):
        return None


def memory_test(model: nn.Module, batch: dict, *, device: torch.device | str = "cpu", limit_share: float = 0.9,
                total_bytes: int | None = None, loss: Callable = loss_fn, amp_ctx: Any = None,
                optimizer_state_factor: float = 2.0) -> dict[str, Any]:
    """Forward + backward (``step.train_step``, weights unchanged) of ``model`` on ``batch``; peak memory
    (+ optimizer state) vs total, pass/fail.

    ``total_bytes`` overrides the measured total (tests use it to force a
    failure). Returns ``device``, ``method``, ``peak_bytes``,
    ``optimizer_state_bytes``, ``total_bytes``, ``total_source``, ``share``,
    ``limit_share``, ``passed``, ``oom``, ``batch_size``, ``seconds``, ``reason``.
    The model's gradients and train/eval mode are restored afterwards.
    """
    t0 = time.time()
    dev = torch.device(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_bytes = int(optimizer_state_factor * sum(p.numel() * p.element_size() for p in params))
    saved_grads = [(p, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    cuda = dev.type == "cuda"
    res: dict[str, Any] = {"device": str(dev), "batch_size": _batch_size(batch), "limit_share": limit_share,
                           "optimizer_state_bytes": opt_bytes, "oom": False, "reason": None}
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        res["method"] = "torch.cuda.max_memory_allocated"
    else:
        reset_ok = _reset_peak_rss()
    try:
        with preserved_rng(dev):
            for p in model.parameters():
                p.grad = None
            model.train()
            b = move_to(batch, dev)
            with amp_mod.autocast(amp_ctx):
                value = _loss_value(loss(model, b))
            train_step(value, _NoUpdate(params), amp_mod.make_scaler(amp_ctx), params, None)
            del value, b
            if cuda:
                torch.cuda.synchronize(dev)
    except torch.OutOfMemoryError as e:
        res.update(oom=True, reason=f"out of memory: {str(e).splitlines()[0]}")
    finally:
        for p, g in saved_grads:
            p.grad = g
        for m, training in modes:
            m.training = training
    if cuda:
        peak = int(torch.cuda.max_memory_allocated(dev))
        res["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(dev))
        total, source = int(torch.cuda.get_device_properties(dev).total_memory), "device"
        torch.cuda.empty_cache()
    else:
        peak, res["method"] = _peak_rss_bytes(reset_ok)
        total, source = system_memory_bytes()
    if total_bytes is not None:
        total, source = int(total_bytes), "given"
    share = (peak + opt_bytes) / total if total > 0 else math.inf
    passed = not res["oom"] and share <= limit_share
    if not passed and res["reason"] is None:
        res["reason"] = (f"peak {peak / 2**20:.1f} MiB + optimizer state {opt_bytes / 2**20:.1f} MiB is "
                         f"{share:.1%} of {total / 2**20:.1f} MiB ({source}), above {limit_share:.0%}")
    res.update(peak_bytes=peak, total_bytes=total, total_source=source, share=share if math.isfinite(share) else None,
               passed=passed, seconds=round(time.time() - t0, 3))
    (log.info if passed else log.warning)("memory test %s on %s: %.1f%% of %.1f MiB%s",
                                          "passed" if passed else "FAILED", dev, 100 * share, total / 2**20,
                                          f" ({res['reason']})" if not passed else "")
    return res
