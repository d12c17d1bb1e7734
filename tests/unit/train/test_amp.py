"""AMP decision, autocast and the grad scaler (the training step that uses them: test_step.py)."""

from __future__ import annotations

import pytest
import torch

from streamguard.errors import UserError
from streamguard.train import amp


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
