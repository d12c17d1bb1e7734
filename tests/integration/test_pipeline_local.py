"""The compiled pipeline, run end to end with kfp.local on a tiny dataset."""

import json
from pathlib import Path

import pytest

from pipelines.run_local import bundles_of, demo_scan, run_local
from streamguard.data.synthetic import write_demo_dataset

pytestmark = pytest.mark.slow
SEEDS = [42, 7]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    write_demo_dataset(path, n=240, seed=3)
    return path


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A second dataset for eval_uris."""
    path = tmp_path_factory.mktemp("other") / "other.jsonl"
    write_demo_dataset(path, n=60, seed=11)
    return path


@pytest.fixture(scope="module")
def run(dataset, other, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    # the GNN's LR from the finder (on the first seed) and the LR cache (on the next), as in the demo
    out = run_local(dataset, work, seeds=SEEDS, profile="test", eval_uris=[f"other={other}"],
                    overrides={"gnn": {"lr": None}})
    return work, out


def _task_dirs(root: Path, task: str) -> list[Path]:
    """Output directories of a task (tasks inside ParallelFor sit under for-loop-*-iteration-N/)."""
    return sorted(p for p in root.glob(f"*/**/{task}*") if p.is_dir() and (p / "executor_output.json").is_file())


def _outputs(task_dir: Path) -> dict:
    """The artifacts a task reported to KFP, with their metadata (what the UI shows)."""
    out = json.loads((task_dir / "executor_output.json").read_text())["artifacts"]
    return {name: v["artifacts"][0] for name, v in out.items()}


def test_every_stage_ran_and_summary_holds_three_models_times_seeds(run):
    work, out = run
    root = Path(out["pipeline_root"])
    for task in ("source-version", "ingest", "build-graphs", "preflight", "train-transformer", "train-gnn",
                 "train-fusion", "evaluate", "aggregate", "publish"):
        assert _task_dirs(root, task), f"no output of task {task} under {root}"
    # the input's version, read at run time, reached ingest (its cache key) and its Dataset's metadata
    (ingest_dir,) = _task_dirs(root, "ingest")
    assert _outputs(ingest_dir)["data"]["metadata"]["data_version"].startswith("stat:")
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    assert set(summary["models"]) == {"transformer", "gnn", "fusion"}
    for fam, m in summary["models"].items():
        assert sorted(map(int, m["seeds"])) == sorted(SEEDS), fam
        for seed, s in m["seeds"].items():
            for k in ("f1", "precision", "recall", "accuracy", "roc_auc"):
                assert 0.0 <= s[k] <= 1.0, (fam, seed, k, s[k])
        assert m["best_seed"] in SEEDS
        assert m["mean"]["f1"] == pytest.approx(sum(s["f1"] for s in m["seeds"].values()) / len(SEEDS))


def test_lr_from_the_finder_on_the_first_seed_and_from_the_cache_on_the_next(run):
    work, out = run
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    sources = {int(k): v["lr_source"] for k, v in summary["models"]["gnn"]["seeds"].items()}
    assert sources == {SEEDS[0]: "finder", SEEDS[1]: "cache"}  # seeds train one at a time, in order
    lrs = {v["lr"] for v in summary["models"]["gnn"]["seeds"].values()}
    assert len(lrs) == 1  # the cached LR is the finder's
    assert all(v["lr_source"] == "fixed" for v in summary["models"]["transformer"]["seeds"].values())
    md = Path(out["report"]).read_text()
    assert "(finder) |" in md and "(cache) |" in md


def test_the_ablation_compares_the_fusion_with_both_branches_per_seed(run):
    work, out = run
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    abl = summary["ablation"]["models"]["fusion"]
    assert sorted(map(int, abl["seeds"])) == sorted(SEEDS)
    for seed, row in abl["seeds"].items():
        assert set(row["vs"]) == {"transformer", "gnn"}
        for part, cmp in row["vs"].items():
            for m in ("f1", "pr_auc"):
                d = cmp[m]["diff"]
                assert d["low"] <= d["value"] <= d["high"], (seed, part, m)
                assert d["value"] == pytest.approx(cmp[m]["a"]["value"] - cmp[m]["b"]["value"])
            assert cmp["f1"]["a"]["value"] == pytest.approx(summary["models"]["fusion"]["seeds"][seed]["f1"])
            assert cmp["f1"]["b"]["value"] == pytest.approx(summary["models"][part]["seeds"][seed]["f1"])
    assert "## Ablation" in Path(out["report"]).read_text()


def test_metrics_come_from_the_test_split_predictions(run):
    work, out = run
    root = Path(out["pipeline_root"])
    test_size = None
    for task_dir in _task_dirs(root, "ingest"):
        f = task_dir / "data" / "test.jsonl"
        if f.is_file():
            test_size = sum(1 for line in f.read_text().splitlines() if line.strip())
    assert test_size
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    for m in summary["models"].values():
        for s in m["seeds"].values():
            assert s["n_test"] == test_size


def test_ui_artifacts_metrics_confusion_matrix_roc_html_markdown(run):
    work, out = run
    root = Path(out["pipeline_root"])
    test_size = sum(1 for line in (_task_dirs(root, "ingest")[0] / "data" / "test.jsonl").read_text().splitlines()
                    if line.strip())
    trained = [d for fam in ("train-transformer", "train-gnn", "train-fusion") for d in _task_dirs(root, fam)]
    assert len(trained) == 3 * len(SEEDS)
    for d in trained:
        arts = _outputs(d)
        metrics = arts["metrics"]["metadata"]
        assert 0.0 <= metrics["test_f1"] <= 1.0 and metrics["seed"] in SEEDS
        cm = arts["cls_metrics"]["metadata"]["confusionMatrix"]
        assert [a["displayName"] for a in cm["annotationSpecs"]] == ["safe", "vulnerable"]
        counts = [c for row in cm["rows"] for c in row["row"]]
        assert sum(counts) == test_size
        tn, fp, fn, tp = counts
        assert metrics["test_tp"] == tp and metrics["test_fp"] == fp and metrics["test_fn"] == fn
        roc = arts["cls_metrics"]["metadata"]["confidenceMetrics"]
        assert roc and all(0.0 <= p["falsePositiveRate"] <= 1.0 for p in roc)
        model_meta = arts["model"]["metadata"]
        for key in ("seed", "f1", "threshold", "data_fingerprint", "code_version"):
            assert model_meta[key] is not None, key
    agg = _outputs(_task_dirs(root, "aggregate")[0])
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    assert agg["metrics"]["metadata"]["fusion_f1_mean"] == pytest.approx(summary["models"]["fusion"]["mean"]["f1"],
                                                                          abs=1e-6)
    diff = summary["ablation"]["models"]["fusion"]["overall"]["gnn"]["f1"]["mean_diff"]
    assert agg["metrics"]["metadata"]["fusion_vs_gnn_f1_diff_mean"] == pytest.approx(diff, abs=1e-6)
    assert f"fusion_vs_transformer_pr_auc_diff_low_s{SEEDS[0]}" in agg["metrics"]["metadata"]
    assert Path(agg["report"]["uri"]).read_text().startswith("# StreamGuard training summary")
    assert Path(agg["report_html"]["uri"]).read_text().startswith("<!doctype html>")


def test_every_seed_writes_a_bundle_and_eval_uris_are_evaluated_and_aggregated(run, other, tmp_path):
    """eval_uris (a List[str] pipeline input) runs under kfp.local: every seed's bundle evaluated on it, and
    external.<name> in production_summary.json, the report and the UI metrics."""
    work, out = run
    root = Path(out["pipeline_root"])
    bundles = bundles_of(out["run_dir"])
    assert len(bundles) == len(SEEDS)
    seeds = set()
    for d in _task_dirs(root, "train-fusion"):
        meta = _outputs(d)["bundle"]
        assert meta["metadata"]["head"] == "fusion" and meta["metadata"]["families"] == "transformer,gnn,fusion"
        seeds.add(meta["metadata"]["seed"])
        manifest = json.loads((Path(meta["uri"]) / "bundle.json").read_text())
        assert manifest["card"]["seed"] == meta["metadata"]["seed"]
    assert seeds == set(SEEDS)
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    ext = summary["external"]["other"]
    assert ext["uri"] == str(other) and ext["n_seeds"] == len(SEEDS)
    n = sum(1 for line in other.read_text().splitlines() if line.strip())
    for seed in SEEDS:
        c = ext["counts"][str(seed)]
        assert c["rows_read"] == n and c["evaluated"] == n - c["training_overlap"] - c["hygiene_removed"]
    for fam in ("transformer", "gnn", "fusion"):
        m = ext["models"][fam]
        assert sorted(map(int, m["seeds"])) == sorted(SEEDS)
        assert m["mean"]["f1"] == pytest.approx(sum(s["f1"] for s in m["seeds"].values()) / len(SEEDS))
    assert "### other" in Path(out["report"]).read_text()
    agg = _outputs(_task_dirs(root, "aggregate")[0])
    assert agg["metrics"]["metadata"]["external_other_fusion_f1_mean"] == pytest.approx(
        ext["models"]["fusion"]["mean"]["f1"], abs=1e-6)
    # the demo's last line: scan the example C tree with the best bundle
    line = demo_scan(out["run_dir"], tmp_path / "scan")
    assert line.startswith("scan (streamguard scan ") and line.endswith(f"SARIF: {tmp_path / 'scan' / 'scan.sarif'}")
    assert json.loads((tmp_path / "scan" / "scan.sarif").read_text())["version"] == "2.1.0"


def test_publish_promotes_the_seed_best_on_validation_and_scan_loads_the_champion_from_the_store(run, tmp_path):
    """The publish step (first run: promote) wrote the bundle of the seed best on validation to the run's store,
    the pointer names it, the KFP artifacts carry the decision; `streamguard scan --bundle <store>/models/
    streamguard/champion` resolves the pointer and loads the bundle from the store."""
    from pipelines.run_local import EXAMPLE_C
    from streamguard.cli import main

    work, out = run
    root, store = Path(out["pipeline_root"]), work / "store"
    pointer = json.loads((store / "models" / "streamguard" / "champion.json").read_text())
    version_dir = store / "models" / "streamguard" / pointer["version"]
    assert (version_dir / "bundle.json").is_file() and pointer["previous"] is None
    valid = {}
    for b in bundles_of(out["run_dir"]):
        m = json.loads((b / "bundle.json").read_text())
        valid[m["card"]["seed"]] = m["card"]["metrics"]["fusion"]["valid"]["pr_auc"]
    card = json.loads((version_dir / "card.json").read_text())
    assert card["selection"]["split"] == "valid" and card["seed"] == max(valid, key=lambda s: (valid[s], -s))
    assert card["gate"]["decision"] == "promoted" and card["gate"]["reason"].startswith("first publish")
    assert card["lineage"]["kfp_run_id"] and pointer["version"].startswith(card["lineage"]["kfp_run_id"][:8])
    assert card["lineage"]["image"].startswith("ghcr.io/streamguard/streamguard-cpu:")
    assert set(card["external"]) == {"other"} and card["ablation"]["models"]  # eval_uris and ablation in the card
    assert card["test"]["intervals"]["pr_auc"]["low"] <= card["test"]["metrics"]["pr_auc"]
    (task_dir,) = _task_dirs(root, "publish")
    arts = _outputs(task_dir)
    meta = arts["published"]["metadata"]
    assert meta["decision"] == "promoted" and meta["version"] == pointer["version"] and meta["champion"] == meta[
        "version"]
    assert arts["metrics"]["metadata"]["gate_promoted"] == 1.0
    assert "**Decision: promoted**" in Path(out["card"]).read_text()
    assert main(["scan", str(EXAMPLE_C), "--bundle", f"{store}/models/streamguard/champion", "--output",
                 str(tmp_path / "scan"), "--top", "-1"]) == 0
    assert pointer["version"] in (tmp_path / "scan" / "scan.json").read_text()
    assert json.loads((tmp_path / "scan" / "scan.sarif").read_text())["version"] == "2.1.0"


def test_reports_exist(run):
    work, out = run
    md = Path(out["report"]).read_text()
    assert "| fusion |" in md and "| transformer |" in md
    html = Path(out["report_html"]).read_text()
    assert "<svg" in html and "fusion" in html


def test_failing_preflight_stops_before_training(dataset, tmp_path):
    with pytest.raises(RuntimeError):
        run_local(dataset, tmp_path, seeds=[1], profile="test", overrides=None, require_gpu=True)
    root = tmp_path / "pipeline_root"
    reports = list(root.glob("*/preflight/report"))
    assert reports and "| accelerator | FAIL |" in reports[0].read_text()
    assert not [p for p in root.glob("*/**/train-*") if p.is_dir()]  # no training task started
