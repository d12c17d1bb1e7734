"""Per-family probes on real (tiny) data: tiny overfit passes for every family and fails when it cannot learn;
the single-batch memory check reports the configured shape and fails when the limit is below the need."""

from __future__ import annotations

import json

import pytest
import torch

from streamguard import families
from streamguard.errors import UserError
from streamguard.smoke import memory_check, smoke_test


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", ["transformer", "gnn", "fusion"])
def test_smoke_passes_for_each_family(probe_data, ctx, family):
    data, graphs, cfg = probe_data
    res = smoke_test(family, data, graphs, cfg, context=ctx)
    assert res["passed"], res["reason"]
    assert res["final_loss"] < 0.5 and res["reduction"] >= 0.7
    assert res["samples"] == 32 and res["steps"] == 50 and res["labels"] == {"0": 16, "1": 16}
    assert res["family"] == family and res["device"] == "cpu" and res["precision"] == "fp32"
    assert res["attempts"][-1]["passed"] and res["lr"] == res["attempts"][-1]["lr"]
    json.dumps(res, allow_nan=False)


def test_smoke_builds_its_own_models_without_a_context(probe_data):
    data, graphs, cfg = probe_data
    res = smoke_test("gnn", data, graphs, cfg, seed=1)
    assert res["passed"], res["reason"]
    assert res["base_lr"] == cfg.gnn.lr


@pytest.mark.parametrize("family", ["transformer", "gnn", "fusion"])
def test_smoke_fails_when_the_setup_cannot_learn(probe_data, ctx, family):
    data, graphs, cfg = probe_data
    res = smoke_test(family, data, graphs, cfg, context=ctx, lr=0.0)
    assert not res["passed"]
    assert "reduced by 0.0%" in res["reason"]
    assert [a["lr"] for a in res["attempts"]] == [0.0, 0.0, 0.0]  # every rung of the ladder tried, none passed


def test_smoke_leaves_the_shared_models_unchanged(probe_data, ctx):
    data, graphs, cfg = probe_data
    model = families.gnn.probe_parts(ctx).model
    before = _state(model)
    smoke_test("gnn", data, graphs, cfg, context=ctx, lr_multipliers=(1.0,))
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_smoke_is_reproducible_for_a_seed(probe_data, ctx):
    data, graphs, cfg = probe_data
    a = smoke_test("fusion", data, graphs, cfg, context=ctx)
    b = smoke_test("fusion", data, graphs, cfg, context=ctx)
    assert a["final_loss"] == b["final_loss"] and a["train_losses"] == b["train_losses"]


def test_memory_check_uses_the_configured_batch_size_and_sequence_length(probe_data, ctx):
    data, graphs, cfg = probe_data
    res = memory_check("transformer", data, graphs, cfg, context=ctx)
    assert res["passed"], res["reason"]
    assert res["seq_len"] == cfg.transformer.max_length  # every window padded to the full window
    assert res["batch_items"] == cfg.transformer.batch_size  # the longest functions, as many as a batch holds ...
    assert res["batch_windows"] > res["windows"] == cfg.transformer.window_batch  # ... read one encoder pass at a time
    assert res["peak_bytes"] > 0 and 0 < res["share"] < 0.9 and res["device"] == "cpu"
    json.dumps(res, allow_nan=False)


def test_memory_check_without_window_passes_takes_every_window_of_the_batch(probe_data):
    from streamguard.config import load_config

    data, graphs, _ = probe_data
    cfg = load_config("test", sets=["transformer.window_batch=0"])
    res = memory_check("transformer", data, graphs, cfg)
    assert res["passed"], res["reason"]
    assert res["windows"] == res["batch_windows"] > cfg.transformer.batch_size
    assert res["batch_items"] == res["batch_size"] == cfg.transformer.batch_size


def test_memory_check_takes_the_largest_graphs(probe_data, ctx):
    data, graphs, cfg = probe_data
    res = memory_check("gnn", data, graphs, cfg, context=ctx)
    assert res["passed"], res["reason"]
    sizes = sorted((int(g.num_nodes) for g in families.gnn.probe_parts(ctx).graphs), reverse=True)
    assert res["batch_items"] == cfg.gnn.batch_size
    assert res["largest_graph_nodes"] == sizes[0] and res["nodes"] == sum(sizes[:cfg.gnn.batch_size])


@pytest.mark.parametrize("family", ["transformer", "gnn", "fusion"])
def test_memory_check_fails_when_the_limit_is_below_the_need(probe_data, ctx, family):
    data, graphs, cfg = probe_data
    res = memory_check(family, data, graphs, cfg, context=ctx, total_bytes=64 * 2**20)  # 64 MiB "device"
    assert not res["passed"]
    assert res["share"] > 0.9 and "above 90%" in res["reason"] and res["total_source"] == "given"


def test_unknown_family_is_a_one_line_user_error(probe_data):
    data, graphs, cfg = probe_data
    with pytest.raises(UserError, match="family 'lstm': unknown"):
        smoke_test("lstm", data, graphs, cfg)
