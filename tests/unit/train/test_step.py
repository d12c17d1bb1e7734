"""The one training step: scale -> backward -> unscale_ -> clip -> step -> update, and its edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from streamguard.train import amp
from streamguard.train.step import make_optimizer, train_step
from train_toys import RecordingScaler


def _model_and_loss(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(8, 4)
    y = torch.randint(0, 2, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y) * 50.0  # large enough that clipping bites
    return model, loss


@pytest.mark.parametrize("enabled", [False, True])
def test_train_step_order_and_clip_sees_unscaled_grads(enabled):
    # reference: plain backward, true gradient norm
    ref_model, ref_loss = _model_and_loss()
    ref_loss.backward()
    true_norm = float(torch.nn.utils.get_total_norm([p.grad for p in ref_model.parameters()]))
    assert true_norm > 1.0

    model, loss = _model_and_loss()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    calls: list[str] = []
    inner = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=enabled)
    scaler = RecordingScaler(inner, calls)
    orig_clip = torch.nn.utils.clip_grad_norm_

    def spy_clip(ps, max_norm, **kw):
        calls.append("clip")
        # the gradients clip sees are unscaled (the true ones), even with scale 1024 in play
        assert float(torch.nn.utils.get_total_norm([p.grad for p in ps])) == pytest.approx(true_norm, rel=1e-5)
        return orig_clip(ps, max_norm, **kw)

    before = [p.detach().clone() for p in params]
    mp = pytest.MonkeyPatch()
    mp.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    try:
        norm = train_step(loss, opt, scaler, params, max_norm=1.0)
    finally:
        mp.undo()
    assert calls == ["scale", "unscale_", "clip", "step", "update"]
    assert norm == pytest.approx(true_norm, rel=1e-5)
    # the step used clipped gradients: the update has norm lr * 1.0
    delta = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(params, before)))
    assert float(delta) == pytest.approx(0.1, rel=1e-4)


def test_train_step_without_scaler_and_without_clip():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    norm = train_step(loss, opt, None, model.parameters(), max_norm=None)
    assert math.isfinite(norm) and norm > 1.0
    grads = [p.grad.clone() for p in model.parameters()]
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(norm, rel=1e-6)  # not clipped


def test_nonfinite_gradients_skip_the_step_disabled_scaler():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    norm = train_step(loss * float("nan"), opt, amp.make_scaler(None), model.parameters(), 1.0)
    assert math.isnan(norm)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))


def test_nonfinite_gradients_enabled_scaler_skips_and_lowers_scale():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [p.detach().clone() for p in model.parameters()]
    norm = train_step(loss * float("inf"), opt, scaler, model.parameters(), 1.0)
    assert not math.isfinite(norm)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    assert scaler.get_scale() < 1024.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_and_step():
    ctx = amp.make_amp("cuda", "auto")
    model = torch.nn.Linear(4, 2).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = amp.make_scaler(ctx)
    with amp.autocast(ctx):
        out = model(torch.randn(8, 4, device="cuda"))
    assert out.dtype == ctx.dtype
    loss = torch.nn.functional.cross_entropy(out.float(), torch.zeros(8, dtype=torch.long, device="cuda"))
    assert math.isfinite(train_step(loss, opt, scaler, model.parameters(), 1.0))


def test_make_optimizer_is_adamw_with_the_given_decay():
    opt = make_optimizer(torch.nn.Linear(2, 2).parameters(), 0.01, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.1
