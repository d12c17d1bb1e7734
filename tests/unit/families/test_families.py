"""The family registry: one entry per family, the CLI and the training path built from it, and a fourth
family (tests/unit/families/toy_family.py) that trains through the same ``train()`` with one registry line."""

from __future__ import annotations

import json

import pytest
import torch

from streamguard import families, training
from streamguard.cli import build_parser
from streamguard.data.samples import read_split
from streamguard.errors import UserError
from streamguard.eval.metrics import compute_metrics
from streamguard.eval.predictions import read_predictions
from streamguard.families import Family
from streamguard.smoke import memory_check, smoke_test
from streamguard.storage import open_store
from toy_family import FAMILY as TOY
from toy_family import FEATURES, collate, items_of


def _subparsers():
    ap = build_parser()
    return next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction").choices


def _options(parser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")]


def test_the_registry_holds_the_three_families_in_training_order():
    assert families.names() == ("transformer", "gnn", "fusion")
    for name in families.names():
        fam = families.get(name)
        assert isinstance(fam, Family) and fam.name == name
        assert all(r in families.names()[:families.names().index(name)] for r in fam.requires)


def test_an_unknown_family_is_a_user_error_naming_the_known_ones():
    with pytest.raises(UserError, match=r"family 'lstm': unknown \(expected one of transformer, gnn, fusion\)"):
        families.get("lstm")


def test_the_train_commands_and_their_options_come_from_the_registry():
    sub = _subparsers()
    common = ["--seed", "--model-dir", "--result-dir", "--run-key", "--profile", "--set", "--overrides", "--store"]
    assert _options(sub["train-transformer"]) == ["--data", *common]
    assert _options(sub["train-gnn"]) == ["--data", "--graphs", *common]
    assert _options(sub["train-fusion"]) == ["--data", "--graphs", "--transformer-dir", "--gnn-dir", *common]


def test_train_names_a_missing_input(tiny_data, tmp_path):
    data, _, cfg = tiny_data
    with pytest.raises(UserError, match=r"train gnn: input 'graphs' not given \(needs data, graphs\)"):
        training.train("gnn", {"data": str(data)}, tmp_path / "m", tmp_path / "r", seed=0, cfg=cfg)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(families.REGISTRY, "toy", TOY)  # the one registry line a new family adds
    return TOY


def test_a_fourth_family_trains_through_the_one_train_path(toy, tiny_data, tmp_path):
    data, _, cfg = tiny_data
    store = open_store(str(tmp_path / "store"))
    card = training.train("toy", {"data": str(data)}, tmp_path / "model", tmp_path / "result", seed=3, cfg=cfg,
                          store=store)
    assert card["family"] == "toy" and card["seed"] == 3 and card["features"] == FEATURES
    assert card["lr_source"] == "fixed" and card["lr"] == toy.opt.lr
    assert json.loads((tmp_path / "model" / "model_card.json").read_text()) == card
    metrics = json.loads((tmp_path / "result" / "metrics.json").read_text())
    meta = json.loads((tmp_path / "result" / "training_metadata.json").read_text())
    assert metrics["family"] == "toy" and meta["features"] == FEATURES and len(meta["history"]) == 3
    assert meta["data_fingerprint"] == card["data_fingerprint"]

    # predictions in test-split order; the card's metrics are those of these predictions
    test = read_split(data, "test")
    ids, y, p, _ = read_predictions(tmp_path / "result" / "predictions.jsonl")
    assert ids == [s.id for s in test] and y.tolist() == [s.target for s in test]
    assert compute_metrics(y, p, card["threshold"])["f1"] == pytest.approx(card["test_metrics"]["f1"], abs=1e-9)
    # checkpointed under the family's name; the saved model is the one that made the predictions
    assert store.exists(training.checkpoint_key(training.default_run_key(card["data_fingerprint"], cfg), "toy", 3))
    model = toy.load(tmp_path / "model")
    with torch.no_grad():
        probs = torch.softmax(model(collate(items_of(test))), dim=-1)[:, 1].numpy()
    assert probs.round(6) == pytest.approx(p, abs=2e-6)


def test_a_fourth_family_makes_a_bundle_that_scores_as_training_did(toy, tiny_data, tmp_path):
    """No bundle code names a family: the toy family's model alone is a bundle (its own head, no graphs)."""
    from streamguard.bundle import load_bundle, write_bundle

    data, _, cfg = tiny_data
    assert isinstance(toy, Family)
    training.train("toy", {"data": str(data)}, tmp_path / "model", tmp_path / "result", seed=1, cfg=cfg)
    manifest = write_bundle(tmp_path / "bundle", {"toy": tmp_path / "model"}, data_dir=data)
    assert manifest["head"] == "toy" and manifest["families"] == ["toy"] and manifest["graph_builder"] is None
    bundle = load_bundle(tmp_path / "bundle")
    test = read_split(data, "test")
    _, _, p, _ = read_predictions(tmp_path / "result" / "predictions.jsonl")
    assert [round(float(x), 6) for x in bundle.score(test, progress=False)["toy"]] == p.tolist()


def test_a_fourth_family_gets_its_command_and_probes_from_the_registry(toy, tiny_data):
    data, _, cfg = tiny_data
    assert _options(_subparsers()["train-toy"])[0] == "--data"
    res = smoke_test("toy", str(data), None, cfg)
    assert res["family"] == "toy" and res["passed"], res["reason"]
    mem = memory_check("toy", str(data), None, cfg)
    assert mem["family"] == "toy" and mem["batch_items"] == toy.opt.batch_size and mem["passed"], mem["reason"]


@pytest.mark.parametrize("embeddings", [False, True])
def test_fusion_features_are_both_encoders_margins_then_embeddings_and_leave_their_modes_alone(tiny_data,
                                                                                               embeddings):
    import dataclasses

    from streamguard.families import fusion
    from streamguard.models.gnn import gnn_collate
    from streamguard.smoke import ProbeContext

    data, graphs, cfg = tiny_data
    cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, embeddings=embeddings))
    with ProbeContext(str(data), str(graphs), cfg) as ctx:
        tmodel, _, ds = families.transformer.probe_parts(ctx)
        gmodel, train_graphs, _ = families.gnn.probe_parts(ctx)
        tmodel.train()
        gmodel.train()
        idx = [0, 3, 5, 8, 13]
        feats = fusion.probe_features(ctx, idx)
        assert tmodel.training and gmodel.training and all(m.training for m in gmodel.modules())
        tmodel.eval()
        gmodel.eval()
        with torch.no_grad():
            tb, gb = ds.collate([ds[i] for i in idx]), gnn_collate([train_graphs[i] for i in idx])
            tl, gl = tmodel(tb), gmodel(gb)
            want = [tl[:, 1:] - tl[:, :1], gl[:, 1:] - gl[:, :1]]
            if embeddings:
                want += [tmodel.embed(tb), gmodel.embed(gb)]
    width = 2 + (tmodel.hidden_size + gmodel.cfg.hidden if embeddings else 0)
    assert feats.shape == (len(idx), width)
    assert torch.allclose(feats, torch.cat(want, dim=1), atol=1e-5)
