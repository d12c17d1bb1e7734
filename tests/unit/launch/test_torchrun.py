"""Several GPUs in one pod: the `gpus_per_task: 8` profile's training tasks run `torchrun --standalone
--nproc-per-node 8 -m streamguard train-<family> ...` with the step's own arguments, and the launcher really
runs torch's launcher (2 gloo processes on the CPU, a trivial program) and passes a worker's failure on as the
step's exit code."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.compile import default_output
from streamguard.errors import EXIT_DISTRIBUTED, UserError
from streamguard.launch import NPROC_ENV, command_for, nproc_from_env
from streamguard.launch.command import TrainCommand, standalone_argv, torchrun_argv
from streamguard.launch.torchrun import run_child

TOY = Path(__file__).with_name("ddp_toy.py")


def dirs(*names: str) -> dict[str, str]:
    return {n: f"/kfp/{n}" for n in (*names, "model", "result")}


@pytest.mark.parametrize("family, inputs, flags", [
    ("transformer", ("data",), ["--data", "/kfp/data"]),
    ("gnn", ("data", "graphs"), ["--data", "/kfp/data", "--graphs", "/kfp/graphs"]),
    ("fusion", ("data", "graphs", "transformer", "gnn"), ["--data", "/kfp/data", "--graphs", "/kfp/graphs",
                                                          "--transformer-dir", "/kfp/transformer",
                                                          "--gnn-dir", "/kfp/gnn"]),
])
def test_the_training_command_is_the_cli_with_the_steps_arguments(family, inputs, flags):
    cmd = TrainCommand(family=family, seed=7, dirs=dirs(*inputs), profile="production",
                       overrides={"train": {"epochs": 3}}, store="s3://b/p", run_key="job-1")
    argv = cmd.argv()
    assert argv == [f"train-{family}", *flags, "--model-dir", "/kfp/model", "--result-dir", "/kfp/result",
                    "--seed", "7", "--run-key", "job-1", "--profile", "production",
                    "--overrides", '{"train": {"epochs": 3}}', "--store", "s3://b/p"]
    from streamguard.cli import build_parser

    args = build_parser().parse_args(argv)  # what each worker parses
    assert (args.family, args.seed, args.model_dir, args.store) == (family, 7, "/kfp/model", "s3://b/p")
    assert json.loads(args.overrides) == {"train": {"epochs": 3}}
    # no overrides, no store: the CLI's defaults (the ConfigMap's STREAMGUARD_STORE) apply
    plain = TrainCommand(family=family, seed=7, dirs=dirs(*inputs)).argv()
    assert "--overrides" not in plain and "--store" not in plain


def test_a_command_the_cli_would_refuse_is_refused_here():
    with pytest.raises(UserError, match="do not parse"):  # the GNN needs its graphs
        TrainCommand(family="gnn", seed=1, dirs=dirs("data")).argv()
    with pytest.raises(UserError, match="takes no --gnn-dir"):
        TrainCommand(family="transformer", seed=1, dirs=dirs("data", "gnn")).argv()
    with pytest.raises(UserError, match="directories"):
        TrainCommand(family="gnn", seed=1, dirs={"data": "/d", "graphs": "/g", "model": "/m"}).argv()


def test_the_8_gpu_profile_runs_torchrun_with_8_processes():
    """The committed gke-a100x8 YAML: each training task asks for 8 GPUs and carries NPROC=8; the launcher turns
    that into torch's launcher with 8 processes per node over the step's own training command."""
    from torch.distributed.run import parse_args

    spec = next(yaml.safe_load_all(default_output("gke-a100x8").read_text()))
    for stage in ("train-transformer", "train-gnn", "train-fusion"):
        container = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        env = {e["name"]: e["value"] for e in container["env"]}
        acc = container["resources"]["accelerator"]
        assert (acc["resourceCount"], acc["resourceType"]) == ("8", "nvidia.com/gpu")
        assert nproc_from_env(env) == 8
        family = stage.removeprefix("train-")
        inputs = {"transformer": ("data",), "gnn": ("data", "graphs")}.get(family, ("data", "graphs", "transformer",
                                                                                  "gnn"))
        cmd = command_for(family, seed=42, profile="production", overrides={}, store_uri="", run_key="r",
                          **dirs(*inputs))
        argv = standalone_argv(nproc_from_env(env), cmd)
        assert argv[:7] == [sys.executable, "-m", "streamguard.launch", "torchrun", "--standalone",
                            "--nproc-per-node", "8"]
        args = parse_args(argv[4:])  # as torch.distributed.run reads it
        assert (args.standalone, args.nproc_per_node, args.module, args.training_script) == (True, "8", True,
                                                                                              "streamguard")
        assert args.training_script_args == cmd.argv()


def test_nproc_env_refuses_nonsense():
    assert nproc_from_env({}) == 1 and nproc_from_env({NPROC_ENV: " 4 "}) == 4
    for bad in ("0", "eight", "-2"):
        with pytest.raises(UserError, match=f"{NPROC_ENV}={bad!r}: expected a whole number >= 1"):
            nproc_from_env({NPROC_ENV: bad})


def test_the_step_runs_torchrun_and_fails_with_the_workers_code(tmp_path, monkeypatch):
    """Through the component (as KFP calls it) with the 8-GPU task's environment: the step runs exactly the
    torchrun command line; a worker's exit 3 (collapse) is the step's exit 3; a clean exit without rank 0's
    model card is exit 6."""
    from kfp import dsl

    import streamguard.launch.torchrun as tr
    from components.train_gnn import train_gnn

    env = {e["name"]: e["value"] for e in next(yaml.safe_load_all(default_output("gke-a100x8").read_text()))[
        "deploymentSpec"]["executors"]["exec-train-gnn"]["container"]["env"]}
    monkeypatch.setenv(NPROC_ENV, env[NPROC_ENV])
    ran, rc = [], [3]
    monkeypatch.setattr(tr, "run_child", lambda argv, env=None: ran.append(argv) or rc[0])

    def art(cls, name):
        (tmp_path / name).mkdir(exist_ok=True)
        return cls(name=name, uri=str(tmp_path / name))

    kwargs = dict(data=art(dsl.Dataset, "data"), graphs=art(dsl.Dataset, "graphs"), seed=42, profile="test",
                  overrides={}, store_uri=str(tmp_path / "store"), run_key="run-9", model=art(dsl.Model, "model"),
                  result=art(dsl.Artifact, "result"), metrics=art(dsl.Metrics, "metrics"),
                  cls_metrics=art(dsl.ClassificationMetrics, "cls"))
    for code, expected in ((3, 3), (0, EXIT_DISTRIBUTED)):
        rc[0] = code
        with pytest.raises(SystemExit) as e:
            train_gnn.python_func(**kwargs)
        assert e.value.code == expected
    cmd = command_for("gnn", **{k: kwargs[k] for k in ("seed", "profile", "overrides", "store_uri", "run_key",
                                                       "data", "graphs", "model", "result")})
    assert ran == [standalone_argv(8, cmd)] * 2


def test_torchrun_really_runs_two_gloo_processes(tmp_path):
    """torch's launcher through ours, 2 processes on the CPU: every rank meets in one gloo group (rank 0 saw a
    world of 2 and the sum 1 + 2); a worker's StreamGuard exit code passes through; a worker killed by a signal
    is exit 6."""
    out = tmp_path / "out.json"
    argv = torchrun_argv(["--standalone", "--nproc-per-node", "2"], [str(TOY), str(out)])
    assert run_child(argv) == 0
    assert json.loads(out.read_text()) == {"world": 2, "sum": 3.0, "local_world": 2}
    out.unlink()
    assert run_child(argv + ["3"]) == 3
    assert json.loads(out.read_text())["world"] == 2  # it failed after the work, as a collapse check would
    assert run_child(argv + ["kill"]) == EXIT_DISTRIBUTED


def test_run_child_passes_sigterm_on(tmp_path):
    """KFP cancels a step with SIGTERM: the launcher hands it to torchrun (which stops its workers)."""
    marker = tmp_path / "child-started"
    child = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from streamguard.launch.torchrun import run_child; "
                               f"sys.exit(run_child([sys.executable, '-c', {child!r}]))"])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
