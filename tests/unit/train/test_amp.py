"""AMP decision, autocast, scaler and the order of one backward step."""

from __future__ import annotations

import math

import pytest
import torch

from streamguard.errors import UserError
from streamguard.train import amp


def _model_and_loss(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(8, 4)
    y = torch.randint(0, 2, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y) * 50.0  # large enough that clipping bites
    return model, loss


class RecordingScaler:
    """Wraps a real GradScaler and records the calls; ``backward_step`` also calls clip in between."""

    def __init__(self, inner, calls, params):
        self.inner, self.calls, self.params = inner, calls, params

    def is_enabled(self):
        return self.inner.is_enabled()

    def scale(self, loss):
        self.calls.append("scale")
        return self.inner.scale(loss)

    def unscale_(self, opt):
        self.calls.append("unscale_")
        return self.inner.unscale_(opt)

    def step(self, opt):
        self.calls.append("step")
        return self.inner.step(opt)

    def update(self):
        self.calls.append("update")
        return self.inner.update()


def test_cpu_auto_is_off_and_autocast_is_noop():
    ctx = amp.make_amp("cpu", "auto")
    assert not ctx.enabled and ctx.precision == "fp32" and not ctx.use_scaler
    with amp.autocast(ctx):
        assert not torch.is_autocast_enabled("cpu")
    with amp.autocast(None):
        pass
    scaler = amp.make_scaler(ctx)
    assert isinstance(scaler, torch.amp.GradScaler) and not scaler.is_enabled()
    assert scaler.state_dict() == {}
    assert not amp.make_amp("cpu", "fp16").enabled
    assert not amp.make_amp(torch.device("cpu"), "off").enabled


def test_unknown_mode_is_a_user_error():
    with pytest.raises(UserError, match="train.amp"):
        amp.make_amp("cpu", "fp8")


def test_cuda_decision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    ctx = amp.make_amp("cuda", "auto")
    assert ctx.enabled and ctx.dtype == torch.bfloat16 and not ctx.use_scaler and ctx.precision == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    ctx = amp.make_amp("cuda", "auto")
    assert ctx.enabled and ctx.dtype == torch.float16 and ctx.use_scaler and ctx.precision == "fp16"
    assert not amp.make_amp("cuda", "off").enabled


def test_enabled_autocast_on_cpu_context():
    ctx = amp.AmpContext("cpu", True, torch.bfloat16)
    with amp.autocast(ctx):
        assert torch.is_autocast_enabled("cpu")
        out = torch.nn.Linear(4, 2)(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("enabled", [False, True])
def test_backward_step_order_and_clip_sees_unscaled_grads(enabled):
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
    scaler = RecordingScaler(inner, calls, params)
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
        norm = amp.backward_step(loss, opt, scaler, params, max_norm=1.0)
    finally:
        mp.undo()
    assert calls == ["scale", "unscale_", "clip", "step", "update"]
    assert norm == pytest.approx(true_norm, rel=1e-5)
    # the step used clipped gradients: the update has norm lr * 1.0
    delta = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(params, before)))
    assert float(delta) == pytest.approx(0.1, rel=1e-4)


def test_backward_step_without_scaler_and_without_clip():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    norm = amp.backward_step(loss, opt, None, model.parameters(), max_norm=None)
    assert math.isfinite(norm) and norm > 1.0
    grads = [p.grad.clone() for p in model.parameters()]
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(norm, rel=1e-6)  # not clipped


def test_nonfinite_gradients_skip_the_step_disabled_scaler():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    norm = amp.backward_step(loss * float("nan"), opt, amp.make_scaler(None), model.parameters(), 1.0)
    assert math.isnan(norm)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))


def test_nonfinite_gradients_enabled_scaler_skips_and_lowers_scale():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [p.detach().clone() for p in model.parameters()]
    norm = amp.backward_step(loss * float("inf"), opt, scaler, model.parameters(), 1.0)
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
    assert math.isfinite(amp.backward_step(loss, opt, scaler, model.parameters(), 1.0))
