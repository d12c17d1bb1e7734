"""LR finder: a sane lr on separable data, exact restoration, fallback on every failure."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from streamguard.train import amp
from streamguard.train.interface import loss_fn
from streamguard.train.lr_finder import LRFinderResult, find_lr, steepest_descent, valley
from train_toys import MLP, RecordingScaler, separable


def adam(params, lr):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_finds_lr_in_range_and_restores_everything_exactly():
    torch.manual_seed(0)
    model = MLP(dropout=0.1)  # dropout consumes RNG during the sweep
    model.eval()
    before = _state(model)
    data = separable()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    res = find_lr(model, adam, data, steps=100, lr_range=(1e-5, 1e-1), fallback_lr=1e-3)
    # RNG streams continue exactly as if the finder had not run
    after_draws = (random.random(), float(np.random.rand()), torch.rand(3))
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    assert after_draws[0] == random.random() and after_draws[1] == float(np.random.rand())
    assert torch.equal(after_draws[2], torch.rand(3))

    assert isinstance(res, LRFinderResult)
    assert res.source == "finder", res.reason
    assert 1e-5 <= res.lr <= 1e-1
    assert 1e-5 <= res.suggested <= 10.0
    assert len(res.lrs) == len(res.losses) >= 10
    assert res.lrs == sorted(res.lrs) and res.lrs[0] == pytest.approx(1e-7)
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and not any(m.training for m in model.modules())


def test_sweep_stops_on_divergence_and_result_is_json_ready():
    torch.manual_seed(0)
    model = MLP()
    res = find_lr(model, lambda p, lr: torch.optim.SGD(p, lr=lr), lambda: iter(separable()),
                  steps=100, end_lr=1e4, lr_range=(1e-5, 1e-1))
    assert res.stopped is not None and len(res.lrs) < 100
    assert res.source == "finder" and 1e-5 <= res.lr <= 1e-1
    import json

    json.dumps(res.to_dict(), allow_nan=False)


def test_clamped_to_range_with_note():
    torch.manual_seed(0)
    res = find_lr(MLP(), adam, separable(), steps=60, lr_range=(1e-9, 1e-8))
    assert res.source == "finder" and res.lr == 1e-8 and "clamped" in res.reason


def test_one_shot_iterator_is_cycled():
    torch.manual_seed(0)
    res = find_lr(MLP(), adam, iter(separable(n=64)), steps=40, lr_range=(1e-5, 1.0))
    assert res.source == "finder" and len(res.lrs) > 2


def test_loss_that_raises_gives_fallback(caplog):
    torch.manual_seed(0)
    model = MLP()
    before = _state(model)
    calls = []

    def bad_loss(m, b):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return torch.nn.functional.cross_entropy(m(b), b["labels"]), None

    with caplog.at_level(logging.WARNING, logger="streamguard.train.lr_finder"):
        res = find_lr(model, adam, separable(), loss=bad_loss, fallback_lr=2e-5)
    assert res.lr == 2e-5 and res.source == "fallback"
    assert "RuntimeError" in res.reason and "device-side assert" in res.reason
    assert any("fallback" in r.getMessage() for r in caplog.records)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # three steps were undone


def test_nan_from_step_one_gives_fallback():
    torch.manual_seed(0)

    def nan_loss(m, b):
        return m(b).sum() * float("nan")

    res = find_lr(MLP(), adam, separable(), loss=nan_loss, fallback_lr=1e-3)
    assert res.source == "fallback" and res.lr == 1e-3
    assert "too few points" in res.reason and "non-finite loss at step 0" in res.reason


def test_other_failures_give_fallback():
    torch.manual_seed(0)
    assert "no batches" in find_lr(MLP(), adam, [], fallback_lr=1e-3).reason
    assert find_lr(MLP(), adam, separable(), steps=1).source == "fallback"

    # a model that cannot learn (loss independent of the weights): no descent
    def flat(m, b):
        return (m(b) * 0.0).sum() + 1.0

    res = find_lr(MLP(), adam, separable(), loss=flat, steps=30)
    assert res.source == "fallback" and "never decreased" in res.reason


def test_steepest_descent_on_a_known_curve():
    lrs = list(np.logspace(-6, 0, 61))
    losses = [1.0 / (1 + np.exp(3 * (np.log10(lr) + 3))) for lr in lrs]  # steepest at 1e-3
    lr, why = steepest_descent(lrs, losses)
    assert why is None and lr == pytest.approx(1e-3, rel=0.1)
    assert steepest_descent(lrs[:3], losses[:3])[0] is None


def _falling_then_rising(lrs) -> list[float]:
    """Flat at 1 up to 1e-5, falling linearly in log(lr) to 0.2 at 1e-2, then rising steeply."""
    out = []
    for lr in lrs:
        x = np.log10(lr)
        out.append(1.0 if x <= -5 else 1.0 - 0.8 * (x + 5) / 3 if x <= -2 else 0.2 + 3.0 * (x + 2))
    return out


def test_steepest_descent_ignores_the_fall_after_the_lowest_point():
    lrs = list(np.logspace(-6, 0, 61))
    losses = _falling_then_rising(lrs)
    i = int(np.argmax(np.asarray(lrs) > 0.05))
    losses[i:] = [2.0 - 1.5 * k / (len(lrs) - i) for k in range(len(lrs) - i)]  # a spike, then a steep recovery
    lr, why = steepest_descent(lrs, losses)
    assert why is None and 1e-5 <= lr <= 1e-2  # on the real descent, not in the recovery after the spike


def test_valley_is_half_way_along_the_longest_fall_and_little_moved_by_noise():
    lrs = list(np.logspace(-6, 0, 61))
    clean = _falling_then_rising(lrs)
    lr, why = valley(lrs, clean)
    assert why is None and lr == pytest.approx(10 ** -3.5, rel=0.3)  # the middle of 1e-5 .. 1e-2 in log(lr)
    rng = np.random.default_rng(0)
    for _ in range(5):
        noisy = list(np.asarray(clean) + rng.normal(0, 0.02, len(clean)))
        lr, why = valley(lrs, noisy)
        assert why is None and 10 ** -4.5 <= lr <= 10 ** -2.5
    assert valley(lrs, [1.0] * len(lrs))[0] is None  # flat: no valley
    assert valley(lrs[:3], clean[:3])[0] is None


def test_the_rule_is_chosen_by_name_and_an_unknown_one_falls_back():
    torch.manual_seed(0)
    res = find_lr(MLP(), adam, separable(), steps=30, suggest="nope")
    assert res.source == "fallback" and "suggest='nope'" in res.reason


# ------------------------------------------------------------------ the training step inside the sweep
def _fp16_loss(model, batch):
    with amp.autocast(amp.AmpContext("cpu", True, torch.float16, use_scaler=True)):
        return loss_fn(model, batch)


def test_an_fp16_sweep_goes_through_the_grad_scaler_and_leaves_it_as_it_was():
    torch.manual_seed(0)
    model = MLP()
    calls: list[str] = []
    scaler = RecordingScaler(torch.amp.GradScaler("cpu", init_scale=2.0**16), calls)
    before = scaler.state_dict()
    scales: list[float] = []
    real_update = scaler.inner.update
    scaler.inner.update = lambda: (real_update(), scales.append(scaler.inner.get_scale()))[0]
    res = find_lr(model, adam, separable(), loss=_fp16_loss, steps=40, scaler=scaler, lr_range=(1e-5, 1.0))
    assert len(res.lrs) >= 10
    # every recorded step is scale -> unscale_ -> step -> update; then the scaler's state is put back
    assert calls == ["scale", "unscale_", "step", "update"] * len(res.lrs) + ["load_state_dict"]
    assert scaler.state_dict() == before
    # the sweep really was loss-scaled: fp16 gradients at 2^16 overflow, and the scaler backed off
    assert min(scales) < 2.0**16


class _NormRecordingSGD(torch.optim.SGD):
    """SGD that records the norm of the gradients it is handed at each step."""

    def __init__(self, params, lr, norms: list[float]):
        super().__init__(params, lr=lr)
        self.norms = norms

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)))
        return super().step(closure)


def test_the_sweep_clips_gradients_at_max_norm():
    def run_sweep(max_norm):
        torch.manual_seed(0)
        norms: list[float] = []
        find_lr(MLP(), lambda ps, lr: _NormRecordingSGD(ps, lr, norms), separable(),
                loss=lambda m, b: loss_fn(m, b)[0] * 50.0, steps=30, max_norm=max_norm)
        return norms

    unclipped, clipped = run_sweep(None), run_sweep(0.5)
    assert len(clipped) >= 10 and len(unclipped) >= 10
    assert max(unclipped) > 0.5  # the gradients are large enough for the clip to act
    assert max(clipped) <= 0.5 * (1 + 1e-5)
