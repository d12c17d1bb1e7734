"""Probes: tiny overfit passes on a learnable toy and fails on unlearnable ones; memory test reports and fails."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from streamguard.train.probes import memory_test, system_memory_bytes, tiny_overfit
from train_toys import MLP, Constant, separable


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tiny_overfit_passes_on_learnable_toy_and_leaves_model_and_rng_alone():
    torch.manual_seed(0)
    model = MLP(hidden=32, dropout=0.1).eval()
    before = _state(model)
    batches = separable(n=32, batch_size=16)
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    res = tiny_overfit(model, batches, steps=50, lr=1e-2)
    draws = (torch.rand(2), random.random(), float(np.random.rand()))
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    assert torch.equal(draws[0], torch.rand(2)) and draws[1] == random.random() and draws[2] == float(np.random.rand())

    assert res["passed"], res
    assert res["final_loss"] < 0.5 and res["reduction"] >= 0.7 and res["first_loss"] > res["final_loss"]
    assert res["steps"] == 50 and res["samples"] == 32 and res["batches"] == 2 and len(res["train_losses"]) == 50
    assert res["reason"] is None and res["seconds"] >= 0
    json.dumps(res, allow_nan=False)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("case", ["lr0", "random_labels_tiny_model", "constant_model"])
def test_tiny_overfit_fails_when_the_model_cannot_learn(case):
    torch.manual_seed(0)
    if case == "lr0":
        res = tiny_overfit(MLP(hidden=32), separable(n=32, batch_size=16), steps=50, lr=0.0)
        assert "reduced by 0.0%" in res["reason"]
    elif case == "random_labels_tiny_model":
        tiny = MLP(d_in=8, hidden=1)
        res = tiny_overfit(tiny, separable(n=32, batch_size=16, random_labels=True, seed=3), steps=50, lr=1e-2)
    else:
        res = tiny_overfit(Constant(), separable(n=32, batch_size=16), steps=50, lr=1e-1)
    assert not res["passed"] and res["reason"]
    json.dumps(res, allow_nan=False)


def test_tiny_overfit_nan_is_a_failed_result():
    res = tiny_overfit(MLP(), separable(n=32), steps=5, loss=lambda m, b: m(b).sum() * float("nan"))
    assert not res["passed"] and "non-finite" in res["reason"]
    json.dumps(res, allow_nan=False)


def test_memory_test_reports_on_cpu_and_restores_the_model():
    torch.manual_seed(0)
    model = MLP(hidden=64).eval()
    batch = separable(n=64, batch_size=64)[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = memory_test(model, batch, device="cpu")
    assert res["passed"], res
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the step moved no weight
    assert res["device"] == "cpu" and res["batch_size"] == 64 and res["peak_bytes"] > 2**20
    total, _ = system_memory_bytes()
    assert res["total_bytes"] == total and 0 < res["share"] < 0.9
    n_param_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert res["optimizer_state_bytes"] == 2 * n_param_bytes
    assert not model.training and all(p.grad is None for p in model.parameters())
    json.dumps(res, allow_nan=False)


def test_memory_test_fails_with_a_tiny_total():
    res = memory_test(MLP(), separable(n=16, batch_size=16)[0], device="cpu", total_bytes=1024)
    assert not res["passed"] and res["share"] > 1 and "above 90%" in res["reason"] and res["total_source"] == "given"


def test_memory_test_out_of_memory_is_a_failed_result():
    def oom(m, b):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    model = MLP()
    model.net[0].weight.grad = torch.ones_like(model.net[0].weight)
    res = memory_test(model, separable(n=16)[0], device="cpu", loss=oom)
    assert res["oom"] and not res["passed"] and "out of memory" in res["reason"]
    assert torch.equal(model.net[0].weight.grad, torch.ones_like(model.net[0].weight))  # grads restored


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_test_on_cuda():
    model = MLP(hidden=256).cuda()
    batch = separable(n=256, batch_size=256)[0]
    res = memory_test(model, batch, device="cuda")
    assert res["passed"] and res["peak_bytes"] > 0
    assert res["total_bytes"] == torch.cuda.get_device_properties(0).total_memory
    assert not memory_test(model, batch, device="cuda", total_bytes=1024)["passed"]
