"""The engine under torchrun (2 CPU processes, gloo) on a small MLP: the 1-process optimizer steps, an agreed
collapse, and a killed rank resumed to exactly where an uninterrupted 2-process run ends."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

CHILD = Path(__file__).with_name("ddp_child.py")
REPO = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
CKPT = "checkpoints/ddp/mlp/last.pt"


def _torchrun(out: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, str(CHILD), str(out), str(out / "store"), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _checkpoint(out: Path) -> dict:
    return torch.load(io.BytesIO((out / "store" / CKPT).read_bytes()), map_location="cpu", weights_only=False)


def test_two_processes_take_the_one_process_steps_even_with_short_and_empty_shards(tmp_path):
    """65 items, global batch 16: the last batch of each epoch is one item, so rank 1's shard is empty there."""
    sys.path.insert(0, str(CHILD.parent))
    try:
        import ddp_child
    finally:
        sys.path.remove(str(CHILD.parent))
    one = tmp_path / "one"
    assert ddp_child.main(str(one), str(one / "store"), 65, "0.01") == 0
    two = tmp_path / "two"
    proc = _torchrun(two, 65, "0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = _result(one), _result(two)
    assert a["distributed"] is None
    assert b["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_size": 16,
                                "per_rank_batch_size": [8, 8]}
    # Same optimizer steps: same weights, losses and test probabilities up to float summation order (measured
    # differences ~3e-8 in the weights, ~6e-8 in the probabilities).
    for k in a["weights"]:
        np.testing.assert_allclose(b["weights"][k], a["weights"][k], rtol=0, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(b["test_probs"], a["test_probs"], rtol=0, atol=1e-6)
    assert len(b["test_probs"]) == 41  # the whole test split once: no padding, no duplicates
    np.testing.assert_allclose([h["train_loss"] for h in b["history"]], [h["train_loss"] for h in a["history"]],
                               rtol=1e-6)
    assert [h["step"] for h in b["history"]] == [h["step"] for h in a["history"]] == [5, 10, 15]

    ck = _checkpoint(two)  # written by rank 0, with each rank's own RNG streams
    assert ck["step"] == 15 and len(ck["rng_ranks"]) == 2
    assert not torch.equal(ck["rng_ranks"][0]["torch"], ck["rng_ranks"][1]["torch"])
    assert torch.equal(ck["rng_ranks"][0]["torch"], ck["rng"]["torch"])


def test_a_collapse_stops_every_rank_at_the_same_step_with_one_report(tmp_path):
    proc = _torchrun(tmp_path, 64, "collapse")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamguard: error: training collapsed")]
    # each rank stops on its own (exit 3), none waits for ever; when one rank exits first torchrun may SIGTERM the
    # other before it prints its line (measured: both lines on most runs, one on a fast clone), so 1 or 2 lines
    assert 1 <= len(errors) <= 2, proc.stderr[-3000:]
    assert len({e.split(":")[2] for e in errors}) == 1  # at the same step, for the same reason
    assert sum("(report: " in e for e in errors) <= 1  # only rank 0 writes the report
    assert "training collapsed" in proc.stderr and "[rank 0]" in proc.stderr
    report = json.loads((tmp_path / "collapse_report.json").read_text())
    assert report["action"] == "stop" and report["family"] == "mlp"
    assert not (tmp_path / "result.json").exists()


def test_a_killed_rank_fails_the_job_and_the_restart_ends_where_an_uninterrupted_run_ends(tmp_path):
    """With dropout: exact only because every rank gets its own RNG stream back from the checkpoint."""
    ref = _torchrun(tmp_path / "ref", 64, "0.01", 0.3)
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / "run"
    killed = _torchrun(out, 64, "0.01", 0.3, 8)  # rank 1 kills itself at its 8th step (epoch 1, batch 4 of 4)
    assert killed.returncode != 0
    assert "Signal 9 (SIGKILL)" in killed.stderr and not (out / "result.json").exists()
    at = _checkpoint(out)
    assert 0 < at["step"] < 12 and len(at["rng_ranks"]) == 2

    resumed = _torchrun(out, 64, "0.01", 0.3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count("resuming from checkpoint") == 2  # both ranks, from rank 0's checkpoint
    got, want = _result(out), _result(tmp_path / "ref")
    for r in (got, want):  # an epoch's train_loss averages the steps this process ran (after the resume)
        r["history"] = [{k: v for k, v in h.items() if k != "train_loss"} for h in r["history"]]
    assert got == want  # weights, test probabilities, threshold, validation history: bit for bit


@pytest.fixture(autouse=True)
def _no_strays():
    """torchrun must not leave a worker behind (a rank blocked for ever would outlive its job)."""
    yield
    strays = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd, state = Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if str(CHILD).encode() in cmd.split(b"\0") and state.rsplit(")", 1)[1].split()[0] != "Z":
            strays.append(pid)
    assert not strays, f"processes left running: {strays}"
