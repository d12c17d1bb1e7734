"""The ``safety`` checks: self-tests of the safety features training relies on.

``safety_atomic_json``: a crash at fsync or at the rename leaves the old file intact and no temp file.
``safety_amp_order``: ``step.train_step`` (the one training step of the engine, the LR finder and the probes),
given a recording scaler and optimizer, calls scale → backward → unscale_ → clip → step → update and clips the
*unscaled* gradients. ``safety_lr_fallback``: an LR finder whose loss raises returns the fallback LR with source
``fallback`` and leaves the model untouched.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from streamguard.jsonio import write_json_atomic
from streamguard.preflight.result import CheckResult, one_line, run_check


class _SimulatedCrash(RuntimeError):
    pass


def check_atomic_json(write_json: Callable[[Any, Any], None] | None = None, workdir: str | None = None) -> CheckResult:
    """A writer that crashes at ``os.fsync`` (data written, not yet renamed) or at ``os.replace`` must leave the
    previous file intact and no temporary file beside it; a normal write then replaces it."""
    from unittest import mock

    from streamguard.jsonio import read_json

    write_json = write_json or write_json_atomic
    old, new = {"version": "old", "pad": "x" * 4096}, {"version": "new", "pad": "y" * 8192}
    vals: dict[str, Any] = {
        "writer": f"{getattr(write_json, '__module__', '?')}.{getattr(write_json, '__name__', '?')}"}
    with tempfile.TemporaryDirectory(prefix="sg-preflight-atomic-", dir=workdir) as tmp:
        target = Path(tmp) / "state.json"
        for point in ("fsync", "replace"):
            write_json(target, old)

            def crash(*_a, point=point, **_k):
                raise _SimulatedCrash(f"simulated crash at os.{point}")

            # os.<point> is patched only for this call (a few milliseconds; the pre-flight runs no other threads)
            with mock.patch.object(os, point, crash):
                try:
                    write_json(target, new)
                    crashed = False
                except _SimulatedCrash:
                    crashed = True
            leftovers = sorted(p.name for p in Path(tmp).iterdir() if p.name != target.name)
            try:
                intact = read_json(target) == old
            except Exception:
                intact = False
            vals[f"crash_at_{point}"] = {"raised": crashed, "old_file_intact": intact, "leftover_files": leftovers}
            if not crashed:  # the write went through: nothing to prove at this point
                vals[f"crash_at_{point}"]["note"] = f"the writer never called os.{point}"
            elif not intact:
                return CheckResult("safety_atomic_json", "fail",
                                   f"a crash at os.{point} during a JSON write corrupted the previous file", vals)
            if leftovers:
                return CheckResult("safety_atomic_json", "fail",
                                   f"a crash at os.{point} left temporary files behind: {', '.join(leftovers)}", vals)
        if not (vals["crash_at_fsync"]["raised"] or vals["crash_at_replace"]["raised"]):
            return CheckResult("safety_atomic_json", "fail", "the JSON writer neither fsyncs nor renames: "
                                                             "not an atomic write", vals)
        write_json(target, new)
        if read_json(target) != new:
            return CheckResult("safety_atomic_json", "fail", "a normal write did not replace the file", vals)
    return CheckResult("safety_atomic_json", "pass", "crash at fsync or rename keeps the old file, no temp file left",
                       vals)


class _RecordingScaler:
    """A GradScaler stand-in (scale 1024) that records its calls and the gradient norm each call sees."""

    scale_factor = 1024.0

    def __init__(self, events: list[str], params: list[torch.nn.Parameter]):
        self.events, self.params, self.seen_norms = events, params, {}

    def _norm(self) -> float:
        grads = [p.grad.detach().flatten() for p in self.params if p.grad is not None]
        return float(torch.cat(grads).norm()) if grads else 0.0

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss):
        self.events.append("scale")
        return loss * self.scale_factor

    def unscale_(self, optimizer):
        self.events.append("unscale_")
        self.seen_norms["unscale_"] = self._norm()
        for p in self.params:
            if p.grad is not None:
                p.grad.div_(self.scale_factor)

    def step(self, optimizer):
        self.events.append("step")
        self.seen_norms["step"] = self._norm()
        return optimizer.step()

    def update(self):
        self.events.append("update")


def check_amp_order(train_step: Callable | None = None) -> CheckResult:
    """``train_step`` (default: ``step.train_step``) must call scale → backward → unscale_ → clip → optimizer
    step → update, and clip the unscaled gradients (so ``max_norm`` means what it says under fp16)."""
    from unittest import mock

    from streamguard.train import step

    train_step = train_step or step.train_step
    events: list[str] = []
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    params = list(model.parameters())
    for p in params:
        p.register_hook(lambda g: events.append("backward") or g)
    opt = torch.optim.SGD(params, lr=0.1)
    real_step = opt.step
    opt.step = lambda *a, **k: (events.append("optimizer.step"), real_step(*a, **k))[1]
    scaler = _RecordingScaler(events, params)
    real_clip = torch.nn.utils.clip_grad_norm_
    clip_seen: dict[str, float] = {}

    def clip(ps, max_norm, *a, **k):
        events.append("clip")
        clip_seen["max_norm"] = float(max_norm)
        clip_seen["norm_in"] = scaler._norm()
        return real_clip(ps, max_norm, *a, **k)

    x = torch.full((8, 4), 10.0)
    loss = (model(x) ** 2).mean()  # large gradients: the unscaled norm is well above max_norm
    max_norm = 1.0
    with mock.patch.object(torch.nn.utils, "clip_grad_norm_", clip):
        train_step(loss, opt, scaler, params, max_norm)
    compact = [e for i, e in enumerate(events) if e != "backward" or (i and events[i - 1] != "backward")]
    expected = ["scale", "backward", "unscale_", "clip", "step", "optimizer.step", "update"]
    vals = {"calls": compact, "expected": expected, "norm_at_unscale": scaler.seen_norms.get("unscale_"),
            "norm_into_clip": clip_seen.get("norm_in"), "norm_at_step": scaler.seen_norms.get("step"),
            "max_norm": max_norm}
    if compact != expected:
        return CheckResult("safety_amp_order", "fail", f"train_step called {' → '.join(compact) or 'nothing'}; "
                                                       f"expected {' → '.join(expected)}", vals)
    at_step = scaler.seen_norms.get("step", math.inf)
    true_norm = scaler.seen_norms.get("unscale_", 0.0) / scaler.scale_factor  # > max_norm by construction
    if not (min(true_norm, max_norm) * 0.999 <= at_step <= max_norm * 1.001):
        return CheckResult("safety_amp_order", "fail", f"gradient norm at the optimizer step is {at_step:.4g}, "
                                                       f"expected max_norm {max_norm} (unscaled norm {true_norm:.4g}): "
                                                       "clipping did not act on the unscaled gradients", vals)
    return CheckResult("safety_amp_order", "pass", "scale → backward → unscale_ → clip → step → update; "
                                                   "clipped norm at step ≤ max_norm", vals)


def check_lr_fallback(find_lr: Callable | None = None) -> CheckResult:
    """An LR finder whose loss raises must return the fallback LR, source ``fallback`` with a reason, and leave
    the model's weights as they were."""
    from streamguard.train import lr_finder

    find_lr = find_lr or lr_finder.find_lr
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [{"x": torch.randn(4, 4), "labels": torch.tensor([0, 1, 0, 1])}]
    calls = {"n": 0}

    def broken_loss(m, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated loss failure")
        out = m(batch["x"])
        return torch.nn.functional.cross_entropy(out, batch["labels"]), out

    fallback = 1.234e-4
    try:
        res = find_lr(model, lambda ps, lr: torch.optim.SGD(ps, lr=lr), batches, loss=broken_loss, steps=10,
                      fallback_lr=fallback)
    except Exception as e:
        return CheckResult("safety_lr_fallback", "fail",
                           f"the LR finder raised instead of falling back: {one_line(e)}", {"loss_calls": calls["n"]})
    source, lr, reason = getattr(res, "source", None), getattr(res, "lr", None), getattr(res, "reason", None)
    restored = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    vals = {"source": source, "lr": lr, "reason": reason, "weights_restored": restored, "loss_calls": calls["n"]}
    if source != "fallback" or lr != fallback:
        return CheckResult("safety_lr_fallback", "fail", f"a failing sweep gave lr {lr} from {source!r}; expected "
                                                         f"the fallback {fallback} from 'fallback'", vals)
    if not reason:
        return CheckResult("safety_lr_fallback", "fail", "the fallback carries no reason", vals)
    if not restored:
        return CheckResult("safety_lr_fallback", "fail", "the failed sweep left the model's weights changed", vals)
    return CheckResult("safety_lr_fallback", "pass", f"failing sweep -> fallback lr ({reason})", vals)


def run(gate) -> list[CheckResult]:
    return [run_check("safety_atomic_json", check_atomic_json), run_check("safety_amp_order", check_amp_order),
            run_check("safety_lr_fallback", check_lr_fallback)]
