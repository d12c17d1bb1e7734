"""benchmarks/gpu.py: refuses without CUDA in one line (exit 2); its code path runs on the CPU with --cpu --tiny."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run, not refuse")
def test_refuses_without_cuda_in_one_line():
    proc = _run()
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0] and "--cpu --tiny" in lines[0], proc.stderr


def test_the_code_path_runs_on_the_cpu_and_prints_every_figure():
    proc = _run("--cpu", "--tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition(": ")
        figures[name] = value
    for name in ("engine_transformer_samples_per_s", "hf_trainer_transformer_samples_per_s",
                 "engine_vs_hf_trainer_throughput_ratio", "engine_gnn_graphs_per_s"):
        value = float(figures[name])
        assert math.isfinite(value) and value > 0, (name, value)
    ours = float(figures["engine_transformer_samples_per_s"])
    theirs = float(figures["hf_trainer_transformer_samples_per_s"])
    assert float(figures["engine_vs_hf_trainer_throughput_ratio"]) == pytest.approx(ours / theirs, rel=0.01)
    assert figures["device"] == "cpu"
