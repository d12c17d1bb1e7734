"""Training made to collapse through the real CLI: exit code 3, one error line, no traceback, a report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamguard.cli import main
from streamguard.data.synthetic import write_demo_dataset
from streamguard.errors import EXIT_COLLAPSE

KNOWN_REASONS = ("loss spike", "non-finite loss", "exploding gradient norm", "non-finite gradient",
                 "vanishing output variance", "non-finite model outputs", "single predicted class")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """120 synthetic functions, ingested and turned into graphs with the test profile (in-process: fast)."""
    d = tmp_path_factory.mktemp("collapse-cli")
    write_demo_dataset(d / "demo.jsonl", n=120, seed=0)
    assert main(["ingest", "--input", str(d / "demo.jsonl"), "--output", str(d / "data"), "--profile", "test"]) == 0
    assert main(["build-graphs", "--data", str(d / "data"), "--output", str(d / "graphs"), "--workers", "1",
                 "--profile", "test", "--store", str(d / "store")]) == 0
    return d


def _train_gnn(d, tag: str, *sets: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "streamguard", "train-gnn", "--data", str(d / "data"), "--graphs", str(d / "graphs"),
           "--seed", "0", "--model-dir", str(d / tag / "model"), "--result-dir", str(d / tag / "result"),
           "--store", str(d / tag / "store"), "--profile", "test", "--set", "train.num_threads=1"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_lr_1000_collapses_with_exit_3_one_line_and_a_report(ingested):
    proc = _train_gnn(ingested, "lr1000", "gnn.lr=1000")
    assert proc.returncode == EXIT_COLLAPSE, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamguard: error:")]
    assert len(errors) == 1 and "training collapsed" in errors[0], proc.stderr[-3000:]
    assert proc.stdout == ""  # no success line

    result = ingested / "lr1000" / "result"
    report = json.loads((result / "collapse_report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert report["action"] == "stop" and report["family"] == "gnn" and report["seed"] == 0
    assert any(r in report["reason"] for r in KNOWN_REASONS), report["reason"]
    assert report["reason"] in errors[0] and str(result / "collapse_report.json") in errors[0]
    assert isinstance(report["step"], int) and report["lr"] and report["history"]
    assert not (result / "metrics.json").exists() and not (ingested / "lr1000" / "model" / "model.pt").exists()


def test_bad_override_is_exit_2_not_collapse(ingested):
    proc = _train_gnn(ingested, "bad", "gnn.lr=fast")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("streamguard: error:")]
