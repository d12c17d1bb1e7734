"""The compiled pipeline, run end to end with kfp.local on a tiny dataset."""

import json
from pathlib import Path

import pytest

from pipelines.compile import DEFAULT_OUTPUT
from pipelines.run_local import run_local
from streamguard.data.synthetic import write_demo_dataset

pytestmark = pytest.mark.slow
SEEDS = [42, 7]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    write_demo_dataset(path, n=240, seed=3)
    return path


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    out = run_local(dataset, work, seeds=SEEDS, profile="test")
    return work, out


def _task_dirs(root: Path, task: str) -> list[Path]:
    return sorted(p for p in root.glob(f"*/{task}*") if p.is_dir())


def test_every_stage_ran_and_summary_holds_three_models_times_seeds(run):
    work, out = run
    root = Path(out["pipeline_root"])
    for task in ("ingest", "build-graphs", "preflight", "train-transformer", "train-gnn", "train-fusion", "aggregate"):
        assert _task_dirs(root, task), f"no output of task {task} under {root}"
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    assert set(summary["models"]) == {"transformer", "gnn", "fusion"}
    for fam, m in summary["models"].items():
        assert sorted(map(int, m["seeds"])) == sorted(SEEDS), fam
        for seed, s in m["seeds"].items():
            for k in ("f1", "precision", "recall", "accuracy", "roc_auc"):
                assert 0.0 <= s[k] <= 1.0, (fam, seed, k, s[k])
        assert m["best_seed"] in SEEDS
        assert m["mean"]["f1"] == pytest.approx(sum(s["f1"] for s in m["seeds"].values()) / len(SEEDS))


def test_metrics_come_from_the_test_split_predictions(run):
    work, out = run
    root = Path(out["pipeline_root"])
    test_size = None
    for data_dir in _task_dirs(root, "ingest"):
        f = data_dir / "data" / "test.jsonl"
        if f.is_file():
            test_size = sum(1 for line in f.read_text().splitlines() if line.strip())
    assert test_size
    summary = json.loads((Path(out["summary"]) / "production_summary.json").read_text())
    for m in summary["models"].values():
        for s in m["seeds"].values():
            assert s["n_test"] == test_size


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
    assert _task_dirs(root, "preflight")
    assert not _task_dirs(root, "train-")
