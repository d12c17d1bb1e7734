"""GPU means GPU: with STREAMGUARD_REQUIRE_CUDA=1 (set by cluster compile profiles on GPU tasks) a task without a
usable CUDA device stops at once with one line and exit code 4, through the real CLI; without it, CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from streamguard.errors import EXIT_PREFLIGHT
from streamguard.train.device import REQUIRE_CUDA_ENV, NoCudaError, cuda_required, resolve_device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the behaviour without a CUDA device")


@pytest.mark.parametrize("value, required", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False),
                                             ("no", False)])
def test_the_env_var_says_whether_cuda_is_required(monkeypatch, value, required):
    monkeypatch.setenv(REQUIRE_CUDA_ENV, value)
    assert cuda_required() is required
    monkeypatch.delenv(REQUIRE_CUDA_ENV)
    assert cuda_required() is False


@needs_no_cuda
def test_without_cuda_it_is_cpu_unless_cuda_is_required():
    assert resolve_device(require_cuda=False) == torch.device("cpu")
    with pytest.raises(NoCudaError) as e:
        resolve_device(require_cuda=True)
    assert e.value.exit_code == EXIT_PREFLIGHT == 4
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{REQUIRE_CUDA_ENV}=1: ") and "allow_cpu_training" in msg


def _cli(args, tmp_path, **env):
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "streamguard", *args], capture_output=True, text=True, env=full,
                          cwd=tmp_path, timeout=300)


@needs_no_cuda
def test_a_training_task_stops_at_once_through_the_cli(tiny_data, tmp_path):
    data, graphs, _ = tiny_data
    args = ["train-gnn", "--data", str(data), "--graphs", str(graphs), "--seed", "1", "--profile", "test",
            "--model-dir", str(tmp_path / "model"), "--result-dir", str(tmp_path / "result"),
            "--store", str(tmp_path / "store")]
    proc = _cli(args, tmp_path, **{REQUIRE_CUDA_ENV: "1"})
    assert proc.returncode == 4, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"streamguard: error: {REQUIRE_CUDA_ENV}=1: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model" / "model_card.json").exists()  # nothing was trained


@needs_no_cuda
def test_preflight_requires_a_gpu_when_the_profile_does(tiny_data, tmp_path):
    """Without --require-gpu (the pipeline parameter's default): the cluster profile's variable alone makes the
    gate fail on a machine without CUDA (test_preflight.py covers the CPU pass without it)."""
    data, graphs, _ = tiny_data
    args = ["preflight", "--data", str(data), "--graphs", str(graphs), "--output", str(tmp_path / "r"),
            "--profile", "test", "--store", str(tmp_path / "store"), "--checks", "accelerator"]
    proc = _cli(args, tmp_path, **{REQUIRE_CUDA_ENV: "1"})
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamguard: error:")]
    assert len(errors) == 1 and "pre-flight failed: accelerator: the profile asks for a GPU" in errors[0]


def test_a_rank_gets_its_local_gpu_and_more_ranks_than_gpus_is_one_line(monkeypatch):
    """Distributed (``index`` = LOCAL_RANK): ``cuda:<index>``; a rank with no GPU of its own stops (no CPU
    fallback: the ranks must not split between GPU and CPU). CUDA is simulated: 2 devices, kernels run on CPU."""
    seen = []
    real_ones = torch.ones

    def ones(*a, device=None, **k):
        seen.append(device)
        return real_ones(*a, **k)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch, "ones", ones)
    assert resolve_device(require_cuda=False, index=1) == torch.device("cuda", 1) and seen == ["cuda:1"]
    assert resolve_device(require_cuda=False) == torch.device("cuda")
    with pytest.raises(NoCudaError) as e:
        resolve_device(require_cuda=False, index=2)
    assert e.value.exit_code == 4 and "\n" not in str(e.value)
    assert str(e.value).startswith("LOCAL_RANK 2: this process needs GPU 2, but torch sees 2 CUDA device(s)")
