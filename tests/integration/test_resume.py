"""Kill training with SIGKILL mid-epoch, restart it, and end exactly where an uninterrupted run ends."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

CHILD = Path(__file__).with_name("engine_child.py")


def _run(store: Path, out: Path, delay: float = 0.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), str(store), str(out), str(delay)], capture_output=True,
                          text=True, timeout=300)


def _checkpoint(store: Path) -> dict | None:
    path = store / "checkpoints/test/mlp/last.pt"
    if not path.is_file():
        return None
    return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    ref = _run(tmp_path / "store-ref", tmp_path / "out-ref")
    assert ref.returncode == 0, ref.stderr[-2000:]

    store, out = tmp_path / "store", tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(store), str(out), "0.03"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ck = _checkpoint(store)
        if ck and ck["epoch"] >= 1 and 0 < ck["pos"] < 20:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = (ck["epoch"], ck["pos"], ck["step"])
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None, "the run ended before a mid-epoch checkpoint could be caught"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()

    resumed = _run(store, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    meta = json.loads((out / "training_metadata.json").read_text())
    assert meta["resumed_from"] is not None and meta["resumed_from"]["step"] >= killed_at[2]
    ref_metrics = json.loads((tmp_path / "out-ref" / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert got == ref_metrics
    assert (out / "predictions.jsonl").read_text() == (tmp_path / "out-ref" / "predictions.jsonl").read_text()
    for p in list(out.rglob("*.json")) + list(store.rglob("*.json")):
        json.loads(p.read_text())  # every JSON left behind parses
