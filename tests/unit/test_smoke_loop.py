"""The tiny overfit tests the loop, not the data: it draws distinct inputs (in each family's own view), one side
of a pair, both classes -- and still fails on a broken loop: frozen head, zero LR, a loss that ignores labels,
labels lost on the way to the loss."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch

from streamguard import families
from streamguard.config import load_config
from streamguard.data.samples import Sample
from streamguard.data.views import View
from streamguard.smoke import ProbeContext, probe_indices, smoke_test
from streamguard.train import probes

FAMILIES = ["transformer", "gnn", "fusion"]


def _s(i, target, pair=None):
    return Sample(id=str(i), func=f"int f{i}(void) {{ return {i}; }}", target=target, pair_id=pair)


def test_probe_indices_takes_distinct_views_one_side_per_pair_both_classes_cheapest_first():
    samples = [_s(0, 1, "a"), _s(1, 0, "a"), _s(2, 1, "b"), _s(3, 0, "b"), _s(4, 1), _s(5, 0), _s(6, 0), _s(7, 1)]
    keys = ["k0", "k1", "same", "same", "k4", "k5", "k6", "k7"]  # pair b: identical inputs, opposite labels
    sizes = [5, 5, 1, 1, 9, 2, 3, 8]
    idx = probe_indices(samples, View("v", keys, [False] * 8, None, "test", sizes), n=8)
    assert not {2, 3} <= set(idx) and not {0, 1} <= set(idx)  # one side of each pair
    assert len({keys[i] for i in idx}) == len(idx)  # no input twice
    assert [samples[i].target for i in idx][:2] == [0, 1]  # classes in turn, cheapest first
    assert idx == [3, 0, 5, 7, 6, 4]
    dup = View("v", ["x", "x", "y", "z", "x", "w", "x", "v"], [False] * 8, None, "test", None)
    assert probe_indices(samples, dup, n=8) == [1, 2, 5, 7]  # "x" once; pairs a and b one side each


@pytest.mark.parametrize("family", FAMILIES)
def test_the_probe_samples_are_distinct_in_the_familys_view(probe_data, ctx, family):
    data, graphs, cfg = probe_data
    res = smoke_test(family, data, graphs, cfg, context=ctx, lr_multipliers=(1.0,))
    assert res["sampling"]["distinct_views"] == res["samples"] == 32
    assert res["sampling"]["pairs_with_both_sides"] == 0
    json.dumps(res, allow_nan=False)


def _long(i: int, tail: str) -> str:
    body = "".join(f"    v = v * {i + k} + {k % 5};\n" for k in range(30))
    return f"int f{i}(int v) {{\n{body}    {tail}\n    return v;\n}}\n"


@pytest.fixture(scope="module")
def hidden_pairs(tmp_path_factory):
    """40 vulnerable/fixed pairs whose two sides differ only past the first window (``max_windows=1``): identical
    transformer inputs with opposite labels, as real paired data often is."""
    from streamguard.data.ingest import ingest

    root = tmp_path_factory.mktemp("hidden-pairs")
    rows = []
    for i in range(40):
        rows.append({"idx": f"{i}v", "func": _long(i, "buf[v] = 0;"), "target": 1, "pair_id": f"p{i}"})
        rows.append({"idx": f"{i}f", "func": _long(i, "if (v < n) buf[v] = 0;"), "target": 0, "pair_id": f"p{i}"})
    (root / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config("test", sets=["transformer.max_windows=1"])
    ingest(str(root / "raw.jsonl"), str(root / "data"), cfg.data)
    return str(root / "data"), cfg


def test_a_working_loop_passes_on_pairs_it_cannot_tell_apart(hidden_pairs):
    data, cfg = hidden_pairs
    with ProbeContext(data, None, cfg) as c:
        view = families.get("transformer").views(c, "train")
        samples = c.train_samples()
        by_pair = {}
        for s, k in zip(samples, view.keys):
            by_pair.setdefault(s.pair_id, set()).add(k)
        assert all(len(k) == 1 for k in by_pair.values())  # both sides: one input
        res = smoke_test("transformer", data, None, cfg, context=c)
    assert res["passed"], res["reason"]
    assert res["sampling"]["pairs_with_both_sides"] == 0 and res["labels"]["0"] and res["labels"]["1"]


def _freeze_head(model):
    model = copy.deepcopy(model)
    head = {"TransformerClassifier": lambda m: m.hf.classifier, "GNNClassifier": lambda m: m.head,
            "FusionHead": lambda m: m.mlp[-1]}[type(model).__name__](model)
    for p in head.parameters():
        p.requires_grad_(False)
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_the_probe_fails_with_a_frozen_head(probe_data, ctx, family, monkeypatch):
    data, graphs, cfg = probe_data
    fam = families.get(family)
    orig = fam.smoke_batches
    monkeypatch.setattr(fam, "smoke_batches", lambda c, idx, bs: (lambda m, b: (_freeze_head(m), b))(*orig(c, idx, bs)))
    res = smoke_test(family, data, graphs, cfg, context=ctx)
    assert not res["passed"] and "frozen" in res["reason"]


def _ignores_labels(kind, model, batch):
    logits = model(batch)
    if kind == "constant_target":
        return torch.nn.functional.cross_entropy(logits.float(), torch.zeros_like(batch["labels"])), logits
    p = torch.softmax(logits.float(), -1)  # "confidence": minimise the entropy, whatever the label
    return -(p * torch.log(p + 1e-9)).sum(-1).mean(), logits


@pytest.mark.parametrize("family,kind", [("transformer", "constant_target"), ("gnn", "entropy"),
                                         ("fusion", "constant_target"), ("gnn", "constant_target")])
def test_the_probe_fails_when_the_training_loss_ignores_the_labels(probe_data, ctx, family, kind, monkeypatch):
    data, graphs, cfg = probe_data
    monkeypatch.setattr(probes, "tiny_overfit", functools.partial(probes.tiny_overfit,
                                                                  loss=functools.partial(_ignores_labels, kind)))
    res = smoke_test(family, data, graphs, cfg, context=ctx)
    assert not res["passed"] and res["reason"]
    assert res["train_losses"][-1] < res["train_losses"][0]  # the broken loss itself did go down


@pytest.mark.parametrize("family", FAMILIES)
def test_the_probe_fails_at_zero_lr(probe_data, ctx, family):
    data, graphs, cfg = probe_data
    res = smoke_test(family, data, graphs, cfg, context=ctx, lr=0.0)
    assert not res["passed"] and "weights did not change" in res["reason"]


def test_the_probe_fails_when_labels_are_lost_on_the_way_to_the_loss(probe_data, ctx, monkeypatch):
    data, graphs, cfg = probe_data
    fam = families.get("gnn")
    orig = fam.smoke_batches

    def zero_labels(c, idx, bs):
        model, batches = orig(c, idx, bs)
        return model, [dict(b, labels=torch.zeros_like(b["labels"])) for b in batches]

    monkeypatch.setattr(fam, "smoke_batches", zero_labels)
    res = smoke_test("gnn", data, graphs, cfg, context=ctx)
    assert not res["passed"] and "not the samples' targets" in res["reason"]
