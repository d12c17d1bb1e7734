"""Bundles: what training predicted is what a loaded bundle predicts; the manifest; refusals; the object store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from streamguard import families
from streamguard.bundle import (
    MANIFEST,
    TRAIN_INDEX,
    best_bundle,
    download_bundle,
    load_bundle,
    upload_bundle,
    write_bundle,
)
from streamguard.data.hygiene import code_key
from streamguard.data.samples import read_split
from streamguard.errors import UserError
from streamguard.eval.predictions import read_predictions
from streamguard.graphs import BUILDER_VERSION


def _card(model_dir):
    return json.loads((model_dir / "model_card.json").read_text())


def test_a_loaded_bundle_predicts_exactly_what_training_predicted_on_the_test_split(trained):
    """Every family: the bundle rebuilds the test functions' graphs and tokens itself (no shards) and its
    probabilities equal the training run's predictions.jsonl at the file's precision."""
    bundle = load_bundle(trained.bundle)
    test = read_split(trained.data, "test")
    scores = bundle.score(test, progress=False)
    assert bundle.families == list(families.names())
    for fam in bundle.families:
        ids, y, p, _ = read_predictions(trained.results[fam] / "predictions.jsonl")
        assert ids == [s.id for s in test]
        assert [round(float(x), 6) for x in scores[fam]] == p.tolist(), fam
        assert bundle.thresholds[fam] == _card(trained.models[fam])["threshold"]


def test_the_manifest_records_builder_cap_tokenizer_thresholds_and_card(trained):
    m = json.loads((trained.bundle / MANIFEST).read_text())
    assert m["format"] == 1 and m["head"] == "fusion" and m["families"] == ["transformer", "gnn", "fusion"]
    assert m["graph_builder"] == BUILDER_VERSION and m["max_nodes"] == trained.cfg.gnn.max_nodes
    t = m["settings"]["transformer"]
    assert t["max_length"] == trained.cfg.transformer.max_length and t["vocab_size"] > 0 and t["tokenizer"]
    cards = {f: _card(trained.models[f]) for f in m["families"]}
    assert m["thresholds"] == {f: c["threshold"] for f, c in cards.items()}
    card = m["card"]
    assert card["seed"] == 42 and card["data_fingerprint"] == cards["fusion"]["data_fingerprint"]
    assert card["code_version"] and card["metrics"]["fusion"]["valid"] == cards["fusion"]["valid_metrics"]
    assert card["lineage"]["models"]["gnn"] == str(trained.models["gnn"])
    train_keys = {code_key(s.func) for s in read_split(trained.data, "train")}
    assert set((trained.bundle / TRAIN_INDEX).read_text().split()) == train_keys
    assert m["train_index"]["keys"] == len(train_keys)
    for fam in m["families"]:  # each model as training wrote it
        assert _card(trained.bundle / fam) == cards[fam]


def _edited(trained, tmp_path, **fields):
    b = tmp_path / "bundle"
    shutil.copytree(trained.bundle, b)
    m = json.loads((b / MANIFEST).read_text())
    m.update(fields)
    (b / MANIFEST).write_text(json.dumps(m))
    return b


@pytest.mark.parametrize("fields, message", [
    ({"graph_builder": "0+tree-sitter-c-0.20.0"}, r"graph_builder '0\+tree-sitter-c-0.20.0' differs from this code's"),
    ({"format": 99}, r"bundle format 99; this StreamGuard .* reads format 1"),
])
def test_a_bundle_of_another_builder_or_format_refuses_to_load_with_one_line(trained, tmp_path, fields, message):
    b = _edited(trained, tmp_path, **fields)
    with pytest.raises(UserError, match=message):
        load_bundle(b)
    res = subprocess.run([sys.executable, "-m", "streamguard", "predict", "--bundle", str(b), "--input",
                          str(trained.data), "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr and "bundle.json" in res.stderr


def test_a_gnn_of_another_builder_is_refused_even_inside_a_current_manifest(trained, tmp_path):
    b = _edited(trained, tmp_path)
    conf = json.loads((b / "gnn" / "config.json").read_text())
    (b / "gnn" / "config.json").write_text(json.dumps({**conf, "graph_builder": "0+old"}))
    with pytest.raises(UserError, match=r"gnn/config.json: graph_builder '0\+old' differs"):
        load_bundle(b)


def test_not_a_bundle_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"not a bundle \(bundle.json missing"):
        load_bundle(tmp_path)


def test_a_bundle_is_one_seed_and_one_head_with_everything_it_is_built_on(trained, tmp_path):
    with pytest.raises(UserError, match="fusion needs the models of transformer, gnn, fusion"):
        write_bundle(tmp_path / "b1", {"fusion": trained.models["fusion"], "gnn": trained.models["gnn"]})
    with pytest.raises(UserError, match="2 heads"):
        write_bundle(tmp_path / "b2", {"transformer": trained.models["transformer"], "gnn": trained.models["gnn"]})
    other = tmp_path / "gnn-other-seed"
    shutil.copytree(trained.models["gnn"], other)
    (other / "model_card.json").write_text(json.dumps({**_card(other), "seed": 7}))
    with pytest.raises(UserError, match="seed differ"):
        write_bundle(tmp_path / "b3", {**trained.models, "gnn": other})


def test_a_bundle_travels_through_the_object_store(trained, store, tmp_path):
    keys = upload_bundle(trained.bundle, store, "models/demo/1")
    assert keys[-1] == "models/demo/1/bundle.json"  # the manifest last: it marks a complete copy
    local = download_bundle(store, "models/demo/1", tmp_path / "copy")
    assert json.loads((local / MANIFEST).read_text()) == json.loads((trained.bundle / MANIFEST).read_text())
    test = read_split(trained.data, "test")
    want = load_bundle(trained.bundle).score(test, progress=False)
    uri = f"{store.uri}/models/demo/1" if store.uri.startswith("s3://") else str(tmp_path / "copy")
    got = load_bundle(uri).score(test, progress=False)
    assert all((got[f] == want[f]).all() for f in want)
    with pytest.raises(UserError, match="not a bundle"):
        download_bundle(store, "models/none", tmp_path / "none")


def test_best_bundle_is_chosen_by_the_heads_validation_f1(trained, tmp_path):
    a = _edited(trained, tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    m = json.loads((b / MANIFEST).read_text())
    m["card"]["metrics"]["fusion"]["valid"]["f1"] = -1.0
    (b / MANIFEST).write_text(json.dumps(m))
    assert best_bundle([b, a]) == a


def test_each_encoder_scores_from_its_embedding_exactly_as_its_forward_does(trained):
    """Inference runs an encoder once for its own score and the fusion's features: ``classify(embed(b))`` must
    be ``forward(b)``, for the transformer and the GNN."""
    import torch

    from streamguard.families.base import Functions

    bundle = load_bundle(trained.bundle)
    fns = Functions(read_split(trained.data, "test"))
    for fam in ("transformer", "gnn"):
        p = bundle.predictors[fam]
        items = p.featurise(fns)
        batch = items.collate([items.items[i] for i in range(len(items.items))])
        with torch.no_grad():
            assert torch.equal(p.model.classify(p.model.embed(batch)), p.model(batch)), fam
