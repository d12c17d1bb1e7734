"""Collapse detection: each failure mode caught, a normal noisy run not flagged, report and actions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from streamguard.errors import EXIT_COLLAPSE, CollapseError, UserError
from streamguard.train.collapse import CollapseConfig, CollapseMonitor, handle_collapse, write_collapse_report
from streamguard.train.interface import loss_fn
from streamguard.train.step import train_step
from train_toys import MLP, Constant, separable


def _train(model, batches, lr, steps, monitor, opt_cls=torch.optim.AdamW, clip=1.0):
    """A minimal engine-like loop; returns (first reason or None, step)."""
    opt = opt_cls(model.parameters(), lr=lr)
    params = list(model.parameters())
    for step in range(1, steps + 1):
        batch = batches[step % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model, batch)
        norm = train_step(loss, opt, None, params, clip)
        reason = monitor.on_step(step, float(loss.detach()), norm)
        if reason:
            return reason, step
    return None, steps


def _eval(model, batches):
    with torch.no_grad():
        logits = torch.cat([model(b) for b in batches]).numpy()
    return logits, logits.argmax(1)


def test_normal_noisy_training_is_not_flagged():
    torch.manual_seed(0)
    data = separable(n=512, batch_size=16, seed=1)
    for b in data:  # 15% label noise: a noisy loss that does not go to zero
        flip = torch.rand(len(b["labels"])) < 0.15
        b["labels"] = torch.where(flip, 1 - b["labels"], b["labels"])
    model = MLP(dropout=0.2)
    monitor = CollapseMonitor()
    reason, _ = _train(model, data, lr=3e-3, steps=600, monitor=monitor)
    assert reason is None and monitor.flags == []
    logits, preds = _eval(model.eval(), data)
    assert monitor.on_eval(logits, preds) is None
    assert monitor.on_eval(torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy(), preds) is None


def test_synthetic_noisy_loss_curve_is_not_flagged():
    rng = np.random.default_rng(0)
    monitor = CollapseMonitor()
    for t in range(1, 5001):
        loss = (0.7 * math.exp(-t / 800) + 0.05) * rng.lognormal(0, 0.6)
        grad = 2.0 * math.exp(-t / 2000) * rng.lognormal(0, 0.8) + 0.01
        assert monitor.on_step(t, loss, grad) is None, t


def test_nan_loss_detected_at_once():
    monitor = CollapseMonitor()
    assert monitor.on_step(1, 0.7, 1.0) is None
    reason = monitor.on_step(2, float("nan"), float("nan"))
    assert reason and "non-finite loss" in reason and "step 2" in reason
    assert "non-finite loss" in CollapseMonitor().on_step(1, float("inf"), 1.0)


def test_nonfinite_gradients_flagged_after_patience():
    monitor = CollapseMonitor(nonfinite_grad_patience=3)
    assert monitor.on_step(1, 0.7, float("inf")) is None
    assert monitor.on_step(2, 0.7, 1.0) is None  # fp16 overflow, then fine: not a collapse
    assert monitor.on_step(3, 0.7, float("inf")) is None
    assert monitor.on_step(4, 0.7, float("nan")) is None
    assert "non-finite gradient" in monitor.on_step(5, 0.7, float("inf"))
    assert "non-finite gradient" in CollapseMonitor(nonfinite_grad_patience=1).on_step(1, 0.7, float("nan"))


def test_exploding_gradient_norm():
    monitor = CollapseMonitor()
    for s in range(1, 21):
        assert monitor.on_step(s, 0.5, 1.0 + 0.1 * (s % 3)) is None
    assert monitor.on_step(21, 0.5, 500.0) is None  # one outlier is tolerated (patience 2)
    assert monitor.on_step(22, 0.5, 1.1) is None
    assert monitor.on_step(23, 0.5, 500.0) is None
    reason = monitor.on_step(24, 0.5, 800.0)
    assert reason and "exploding gradient norm" in reason and "step 24" in reason
    assert len(monitor.recent()) == 20 and monitor.recent()[-1]["grad_norm"] == 800.0
    strict = CollapseMonitor(CollapseConfig(patience=1), grad_factor=10.0)  # config object + overrides
    assert strict.cfg.patience == 1 and strict.cfg.grad_factor == 10.0
    for s in range(1, 11):
        assert strict.on_step(s, 0.5, 1.0) is None
    assert "exploding" in strict.on_step(11, 0.5, 20.0)


def test_loss_spike():
    monitor = CollapseMonitor()
    for s in range(1, 11):
        assert monitor.on_step(s, 0.4, 1.0) is None
    assert monitor.on_step(11, 9.0, 1.0) is None
    assert "loss spike" in monitor.on_step(12, 12.0, 1.0)
    # cooldown: the next steps are not flagged again at once (gives reduce_lr a chance)
    assert all(monitor.on_step(s, 12.0, 1.0) is None for s in range(13, 33))
    # still spiking after the cooldown: flagged again, against the pre-collapse reference
    assert monitor.on_step(33, 12.0, 1.0) is None
    assert "running mean 0.4" in monitor.on_step(34, 12.0, 1.0)
    # recovered after the cooldown: fine
    fresh = CollapseMonitor(cooldown_steps=3)
    for s in range(1, 11):
        fresh.on_step(s, 0.4, 1.0)
    fresh.on_step(11, 9.0, 1.0)
    assert fresh.on_step(12, 9.0, 1.0)
    assert all(fresh.on_step(s, 0.35, 1.0) is None for s in range(13, 60))


def test_huge_lr_run_is_flagged():
    torch.manual_seed(0)
    monitor = CollapseMonitor()
    reason, step = _train(MLP(), separable(batch_size=16), lr=1e3, steps=50, monitor=monitor)
    assert reason is not None and step <= 10, (reason, step)


def test_single_class_predictions_and_constant_model():
    monitor = CollapseMonitor()
    logits = np.random.default_rng(0).normal(size=(40, 2))
    assert monitor.on_eval(logits, np.ones(40, dtype=int)).startswith("single predicted class")
    assert monitor.on_eval(logits, logits.argmax(1)) is None
    model = Constant()
    c_logits, c_preds = _eval(model, separable(n=64))
    reason = monitor.on_eval(c_logits, c_preds)
    assert reason and "vanishing output variance" in reason
    assert "vanishing" in monitor.on_eval(np.full(30, 0.73))  # probabilities
    assert "non-finite" in monitor.on_eval(np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 0.0]]))
    assert monitor.on_eval(np.zeros((1, 2))) is None  # too few samples to judge
    one_sided = np.column_stack([logits[:, 0], logits[:, 1] + 10.0])  # spread fine, every argmax is class 1
    assert monitor.on_eval(one_sided, one_sided.argmax(1)).startswith("single predicted class")
    assert monitor.on_eval(one_sided) is None  # no predicted classes given: no single-class check


def test_report_written_atomically_and_parses(tmp_path, store):
    history = [{"step": 3, "loss": float("nan"), "grad_norm": float("inf")}, {"epoch": 0, "valid_f1": 0.5}]
    out = tmp_path / "out"
    out.mkdir()
    where = write_collapse_report(out, reason="non-finite loss", step=3, epoch=0, history=history,
                                  store=store, key="runs/r1/collapse_report.json", family="gnn", seed=1)
    assert where == str(out / "collapse_report.json")
    text = (out / "collapse_report.json").read_text()
    for parsed in (json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")),
                   json.loads(store.get_bytes("runs/r1/collapse_report.json"))):
        assert parsed["reason"] == "non-finite loss" and parsed["step"] == 3 and parsed["epoch"] == 0
        assert parsed["history"][0]["loss"] == "nan" and parsed["history"][0]["grad_norm"] == "inf"
        assert parsed["family"] == "gnn" and parsed["seed"] == 1
    assert [p.name for p in out.iterdir()] == ["collapse_report.json"]  # no temp files left


def test_handle_collapse_stop_raises_with_report(tmp_path):
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    monitor = CollapseMonitor()
    monitor.on_step(1, 0.7, 1.0)
    reason = monitor.on_step(2, float("nan"), 1.0)
    report = tmp_path / "out" / "collapse_report.json"
    with pytest.raises(CollapseError) as ei:
        handle_collapse(reason, "stop", opt, report_path=report, step=2, epoch=0, history=monitor.recent(),
                        family="transformer", seed=0)
    assert ei.value.exit_code == EXIT_COLLAPSE == 3
    assert str(report) in str(ei.value) and ei.value.report_path == str(report)
    data = json.loads(report.read_text())
    assert data["action"] == "stop" and "non-finite loss" in data["reason"] and len(data["history"]) == 2
    assert data["lr"] == [1e-3]


def test_handle_collapse_reduce_lr_survives_the_scheduler(tmp_path):
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    event = handle_collapse("loss spike", "reduce_lr", opt, report_path=tmp_path / "r.json", step=5, epoch=1,
                            scheduler=sched, lr_factor=0.1)
    assert event["action"] == "reduce_lr" and event["lr_after"] == [pytest.approx(1e-3)]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # not undone by the scheduler
    assert not (tmp_path / "r.json").exists()
    # below min_lr: stop instead
    with pytest.raises(CollapseError, match="cannot be reduced further"):
        handle_collapse("loss spike", "reduce_lr", opt, report_path=tmp_path, min_lr=1e-3, step=6, epoch=1)
    assert json.loads((tmp_path / "collapse_report.json").read_text())["requested_action"] == "reduce_lr"
    with pytest.raises(UserError, match=r"train.collapse.action: unknown value 'ignore'"):
        handle_collapse("x", "ignore", opt, report_path=tmp_path)
