"""publish: seed picked on validation, the champion/challenger gate on real predictions of hand-made bundles with
known scores, racing publishers, the champion pointer as --bundle, Model Registry against an HTTP double."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from registry_double import PREFIX, RegistryDouble
from streamguard.bundle import load_bundle
from streamguard.champion import make_version, read_pointer, resolve
from streamguard.cli import main
from streamguard.config import load_config
from streamguard.data.samples import read_split
from streamguard.models.fusion import BRANCHES
from streamguard.publish import publish, publish_kfp_metrics, select_bundle


def variant(src: Path, dst: Path, kind: str) -> Path:
    """A copy of a trained bundle whose fusion is rewired to a known function of its anchor branch's logit margin
    z: ``anchor`` s = z, ``inverted`` s = -z (ranking reversed: ROC-AUC 1 - anchor's), ``constant`` s = 0 (ROC-AUC
    0.5, PR-AUC the share of vulnerable functions). The encoders and everything else are the trained ones."""
    shutil.copytree(src, dst)
    conf = json.loads((dst / "fusion" / "config.json").read_text())
    a = BRANCHES.index(conf["anchor"])
    sd = torch.load(dst / "fusion" / "model.pt", weights_only=True)
    w = torch.zeros_like(sd["w"])
    w[:, a] = {"anchor": 0.0, "inverted": -2.0, "constant": -1.0}[kind]
    sd["w"], sd["b"] = w, torch.zeros_like(sd["b"])
    for k in sd:
        if re.match(r"mlp\.\d+\.3\.", k):
            sd[k] = torch.zeros_like(sd[k])
    torch.save(sd, dst / "fusion" / "model.pt")
    return dst


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    out = {k: variant(trained.bundle, root / k, k) for k in ("anchor", "inverted", "constant")}
    test = read_split(trained.data, "test")
    y = [s.target for s in test]
    anchor_p = load_bundle(out["anchor"]).score(test, progress=False)["fusion"]
    auc = roc_auc_score(y, anchor_p)
    if auc == 0.5:
        pytest.skip("the trained anchor branch ranks the test split at exactly chance: no known better/worse pair")
    good, bad = ("anchor", "inverted") if auc > 0.5 else ("inverted", "anchor")
    return {**out, "good": out[good], "bad": out[bad], "auc": max(auc, 1 - auc), "y": y}


def cfg(*sets):
    return load_config("test", sets=["publish.n_boot=50", "publish.settle_s=0", *sets])


def run(b, trained, store, out, run_id, *sets, **kw):
    return publish([b], trained.data, out, cfg(*sets), store=store, run_id=run_id, **kw)


def test_gate_promotes_first_refuses_worse_promotes_better(bundles, trained, local_store, tmp_path):
    """Hand-made bundles with known ROC-AUC on the test split: constant 0.5, bad 1 - good."""
    r1 = run(bundles["constant"], trained, local_store, tmp_path / "1", "run-1", "publish.metric=roc_auc")
    assert r1["gate"]["decision"] == "promoted" and r1["gate"]["reason"].startswith("first publish")
    assert read_pointer(local_store, "streamguard")[0]["version"] == r1["version"] == make_version("run-1", *_v())
    assert local_store.exists(f"models/streamguard/{r1['version']}/bundle.json")

    r2 = run(bundles["bad"], trained, local_store, tmp_path / "2", "run-2", "publish.metric=roc_auc")
    g = r2["gate"]
    assert g["decision"] == "refused" and not g["promoted"] and g["champion_version"] == r1["version"]
    test = g["datasets"]["test"]
    assert test["champion"] == pytest.approx(0.5) and test["challenger"] == pytest.approx(1 - bundles["auc"])
    assert test["delta"] == pytest.approx(0.5 - bundles["auc"]) and not test["better"]
    assert test["delta_interval"]["low"] <= test["delta"] <= test["delta_interval"]["high"]
    assert read_pointer(local_store, "streamguard")[0]["version"] == r1["version"]  # the champion stands
    assert local_store.exists(f"models/streamguard/{r2['version']}/bundle.json")  # published, not promoted

    r3 = run(bundles["good"], trained, local_store, tmp_path / "3", "run-3", "publish.metric=roc_auc")
    g = r3["gate"]
    assert g["decision"] == "promoted" and g["datasets"]["test"]["challenger"] == pytest.approx(bundles["auc"])
    assert g["champion_score"] == pytest.approx(0.5)
    pointer = read_pointer(local_store, "streamguard")[0]
    assert pointer["version"] == r3["version"] and pointer["previous"] == r1["version"]
    # the decision and both scores: report, UI metrics, card (in the store too)
    md = (tmp_path / "3" / "report.md").read_text()
    assert "**Decision: promoted**" in md and f"`{r1['version']}`" in md
    m = publish_kfp_metrics(r3)
    assert m["gate_promoted"] == 1.0 and m["gate_challenger_score"] == pytest.approx(bundles["auc"], abs=1e-6)
    card = json.loads(local_store.get_bytes(f"models/streamguard/{r3['version']}/card.json"))
    assert card["gate"]["decision"] == "promoted" and card["lineage"]["kfp_run_id"] == "run-3"
    assert card["lineage"]["data_fingerprint"] == json.loads((trained.data / "data_report.json").read_text())[
        "fingerprint"]
    ci = card["test"]["intervals"]["roc_auc"]
    assert ci["low"] <= card["test"]["metrics"]["roc_auc"] <= ci["high"]

    # a margin larger than the improvement refuses it; promote=False never moves the pointer
    r4 = run(bundles["anchor" if bundles["good"].name == "inverted" else "inverted"], trained, local_store,
             tmp_path / "4", "run-4", "publish.metric=roc_auc", "publish.margin=0.0")
    assert r4["gate"]["decision"] == "refused"  # the worse one vs the good champion
    r5 = run(bundles["good"], trained, local_store, tmp_path / "5", "run-5", "publish.metric=roc_auc",
             promote=False)
    assert r5["gate"]["decision"] == "not-promoted"
    assert read_pointer(local_store, "streamguard")[0]["version"] == r3["version"]


def _v():
    from streamguard import __version__

    return __version__, ""


def test_default_metric_pr_auc_of_a_constant_model_is_the_vulnerable_share(bundles, trained, local_store, tmp_path):
    run(bundles["constant"], trained, local_store, tmp_path / "1", "c1")
    r = run(bundles["good"], trained, local_store, tmp_path / "2", "c2")
    test = r["gate"]["datasets"]["test"]
    y = bundles["y"]
    assert r["gate"]["metric"] == "pr_auc" and test["champion"] == pytest.approx(np.mean(y))
    p = load_bundle(bundles["good"]).score(read_split(trained.data, "test"), progress=False)["fusion"]
    assert test["challenger"] == pytest.approx(average_precision_score(y, p))
    assert r["gate"]["promoted"] == (test["challenger"] > np.mean(y))


def test_seed_is_picked_by_validation_never_test(bundles, tmp_path):
    a, b = shutil.copytree(bundles["good"], tmp_path / "a"), shutil.copytree(bundles["good"], tmp_path / "b")
    for d, seed, valid, test in ((a, 1, 0.9, 0.1), (b, 2, 0.2, 0.99)):
        m = json.loads((d / "bundle.json").read_text())
        m["card"]["seed"] = seed
        m["card"]["metrics"]["fusion"]["valid"]["pr_auc"] = valid
        m["card"]["metrics"]["fusion"]["test"]["pr_auc"] = test
        (d / "bundle.json").write_text(json.dumps(m))
    chosen, sel = select_bundle([b, a], "pr_auc")
    assert chosen == a and sel["chosen_seed"] == 1 and sel["split"] == "valid"
    assert select_bundle([b, a], "brier")[0] in (a, b)  # lower-is-better metrics select too


class Gate:
    """A store wrapper: each racer's first pointer write waits until the other racer is about to write too, so
    both have read the same champion and both write (the race the pointer protocol must survive)."""

    def __init__(self, store, ignore_conditions: bool, parties=2):
        self._store, self.barrier, self.seen = store, threading.Barrier(parties, timeout=120), set()
        self.ignore = ignore_conditions
        self.writes: list[tuple[str, bool]] = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def put_bytes_if(self, key, data, tag):
        me = threading.get_ident()
        if me not in self.seen:
            self.seen.add(me)
            self.barrier.wait()
        if self.ignore:  # a store that ignores If-Match / If-None-Match: every write lands
            self._store.put_bytes(key, data)
            ok = True
        else:
            ok = self._store.put_bytes_if(key, data, tag)
        self.writes.append((json.loads(data)["version"], ok))
        return ok


@pytest.mark.parametrize("backend,ignore", [("local", False), ("s3", False), ("s3", True)],
                         ids=["local-lock", "s3-if-match", "s3-ignoring-conditions"])
def test_racing_publishers_leave_a_consistent_champion(bundles, trained, backend, ignore, request, tmp_path):
    """Champion: the bad model. Two racers better than it (constant, good) read the same pointer and both
    write. Whether the store enforces the conditional write (the local lock, S3 If-Match -- moto does) or ignores
    it, the pointer ends naming a complete bundle: the better racer."""
    store = request.getfixturevalue(f"{backend}_store")
    run(bundles["bad"], trained, store, tmp_path / "0", "race-0", "publish.metric=roc_auc")
    gated = Gate(store, ignore)
    results, errors = {}, []

    def racer(kind):
        try:
            results[kind] = run(bundles[kind], trained, gated, tmp_path / kind, f"race-{kind}",
                                "publish.metric=roc_auc", "publish.settle_s=0.5")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=racer, args=(k,)) for k in ("constant", "good")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    pointer = read_pointer(store, "streamguard")[0]
    good, constant = results["good"], results["constant"]
    assert pointer["version"] == good["version"] and good["gate"]["promoted"]
    assert len(gated.writes) >= 2  # both racers wrote from the same read (one refused where the store enforces it)
    if constant["gate"]["promoted"]:  # champion for a moment: then the good one replaced it, compared with it
        assert pointer["previous"] == constant["version"] and good["gate"]["champion_version"] == constant["version"]
    else:
        assert constant["gate"]["decision"] in ("refused", "superseded")
    # the pointer names a complete bundle: the champion URI loads it
    b = load_bundle(f"{store.uri}/models/streamguard/champion")
    assert b.source.endswith(results["good"]["version"]) and b.card["seed"] == 42


def test_champion_uri_resolves_for_scan_predict_evaluate(bundles, trained, local_store, tmp_path, capsys):
    r = run(bundles["good"], trained, local_store, tmp_path / "p", "res-1")
    champion = f"{local_store.uri}/models/streamguard/champion"
    assert resolve(champion) == f"{local_store.uri}/models/streamguard/{r['version']}"
    assert resolve(champion + ".json") == resolve(champion)
    assert resolve(str(bundles["good"])) == str(bundles["good"])  # a plain bundle directory is itself
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("int add(int a, int b) { return a + b; }\n")
    assert main(["scan", str(src), "--bundle", champion, "--output", str(tmp_path / "scan"), "--top", "-1"]) == 0
    scan = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert r["version"] in json.dumps(scan)
    assert main(["evaluate", "--bundle", champion, "--data", str(trained.data), "--split", "test",
                 "--output", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["bundle"]["source"].endswith(r["version"])
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main(["predict", "--bundle", f"{empty}/models/streamguard/champion", "--input", str(trained.data),
                 "--output", str(tmp_path / "pr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no champion yet" in err[0]


def test_registration_sends_registered_model_version_and_artifact(bundles, trained, local_store, tmp_path,
                                                                 monkeypatch):
    with RegistryDouble() as reg:
        monkeypatch.setenv("MODEL_REGISTRY_URL", reg.url)
        monkeypatch.setenv("MODEL_REGISTRY_TOKEN_PATH", str(tmp_path / "token"))
        (tmp_path / "token").write_text("sa-token\n")
        r = run(bundles["good"], trained, local_store, tmp_path / "p", "reg-1")
        version = r["version"]
        assert r["registry"]["registered"], r["registry"]
        (rm,) = reg.sent("POST", "registered_models")
        assert rm["name"] == "streamguard" and rm["owner"] == "streamguard"
        (mv,) = reg.sent("POST", "model_versions")
        assert mv["name"] == version and mv["registeredModelId"] == r["registry"]["registered_model_id"]
        props = mv["customProperties"]
        assert props["test_pr_auc"]["metadataType"] == "MetadataDoubleValue"
        assert props["test_pr_auc"]["double_value"] == pytest.approx(r["card"]["test"]["metrics"]["pr_auc"])
        assert props["kfp_run_id"] == {"metadataType": "MetadataStringValue", "string_value": "reg-1"}
        assert props["gate_decision"]["string_value"] == "promoted"
        assert "test_pr_auc_low" in props and "data_fingerprint" in props
        (ma,) = reg.sent("POST", "model_versions/*")
        assert ma["artifactType"] == "model-artifact" and ma["uri"] == r["uri"]
        assert ma["modelFormatName"] == "streamguard-bundle" and ma["modelFormatVersion"] == "1"
        (patch,) = reg.sent("PATCH", "registered_models/*")
        assert patch["customProperties"]["champion"]["string_value"] == version
        assert all(q["auth"] == "Bearer sa-token" for q in reg.requests)
        assert all(q["path"].startswith(PREFIX) for q in reg.requests)
        # `streamguard register` again: idempotent, finds what exists, creates nothing new
        n = len(reg.sent("POST", "model_versions"))
        assert main(["register", "--version", version, "--store", local_store.uri, "--profile", "test"]) == 0
        assert len(reg.sent("POST", "model_versions")) == n and len(reg.objects["artifacts"]) == 1


def test_registry_down_one_line_and_the_store_publish_stands(bundles, trained, local_store, tmp_path, monkeypatch,
                                                             caplog, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    monkeypatch.setenv("MODEL_REGISTRY_URL", f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING):
        r = run(bundles["good"], trained, local_store, tmp_path / "p", "down-1", "store.retry_budget_s=0.5")
    assert not r["registry"]["registered"] and "model registry unavailable" in r["registry"]["error"]
    assert read_pointer(local_store, "streamguard")[0]["version"] == r["version"]  # the store publish stands
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "streamguard.publish"
             and rec.levelno == logging.WARNING]
    assert len(lines) == 1 and "\n" not in lines[0] and "stands" in lines[0]
    # publish.registry_failure=fail: the same line, exit 7, still published
    capsys.readouterr()
    code = main(["publish", str(bundles["good"]), "--data", str(trained.data), "--output", str(tmp_path / "q"),
                 "--store", local_store.uri, "--run-id", "down-2", "--profile", "test", "--set",
                 "publish.registry_failure=fail", "--set", "store.retry_budget_s=0.5", "--set", "publish.n_boot=20"])
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("streamguard: error:")]
    assert code == 7 and len(errors) == 1 and "Traceback" not in err and "model registry" in errors[0]
    assert local_store.exists(f"models/streamguard/{make_version('down-2', *_v())}/card.json")


def test_a_champion_this_code_cannot_load_is_kept_unless_told(bundles, trained, local_store, tmp_path):
    r1 = run(bundles["constant"], trained, local_store, tmp_path / "1", "old-1")
    key = f"models/streamguard/{r1['version']}/bundle.json"
    manifest = json.loads(local_store.get_bytes(key))
    local_store.put_bytes(key, json.dumps({**manifest, "format": 99}).encode())  # an older/newer bundle format
    r2 = run(bundles["good"], trained, local_store, tmp_path / "2", "new-2")
    assert r2["gate"]["decision"] == "refused" and "cannot be loaded" in r2["gate"]["reason"]
    assert "bundle format 99" in r2["gate"]["reason"]
    r3 = run(bundles["good"], trained, local_store, tmp_path / "3", "new-3", "publish.incompatible_champion=promote")
    assert r3["gate"]["decision"] == "promoted"
    assert read_pointer(local_store, "streamguard")[0]["version"] == r3["version"]
