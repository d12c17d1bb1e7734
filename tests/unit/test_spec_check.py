"""pipelines/spec_check.py: the compiled pipelines hold to the KFP backend's rules; the YAML compiled before
issue 11 (tests/fixtures/kfp/pre_issue11.*.yaml) does not, and each of its problems is named."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import spec_check
from pipelines.compile import default_output
from pipelines.spec_check import FEATURES, MIN_BACKEND, argo_retry_strategy, check, check_file, load, main

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "kfp"
PROFILES = ["local", "gke-a100", "generic-a100"]
SEED_TASKS = ("train-transformer", "train-gnn", "train-fusion")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_committed_compiled_profile_passes(profile):
    assert check_file(default_output(profile)) == []


def test_cli_exits_0_on_the_committed_yaml(capsys):
    files = [str(default_output(p)) for p in PROFILES]
    assert main(files) == 0
    assert capsys.readouterr().out == ""


def _texts(path: Path) -> list[str]:
    return [str(p) for p in check_file(path)]


def test_pre_issue11_local_yaml_fails_with_each_problem_named():
    problems = _texts(FIXTURES / "pre_issue11.local.yaml")
    for task in SEED_TASKS:  # finding 1: the loop item is STRING, every training task wants an integer seed
        assert (f"task {task} (comp-for-loop-1): input seed: producer pipelinechannel--seeds-loop-item "
                "(input of the enclosing DAG) is STRING, consumer expects NUMBER_INTEGER") in problems
    assert ("task for-loop-1 (root): loop item pipelinechannel--seeds-loop-item: the default of seeds holds "
            "NUMBER_INTEGER values, the item input is STRING") in problems
    # finding 2: the renamed loop, and the backend release that first resolves it
    assert ("task for-loop-1 (root): loop taskInfo.name 'seeds' differs from its task key 'for-loop-1' "
            "(drop ParallelFor(name=...))") in problems
    assert any(p.startswith("task for-loop-1 (root): uses `dsl.ParallelFor(name=...)`") and "2.16.0" in p
               and f"minimum is {MIN_BACKEND}" in p for p in problems)
    assert len(problems) == 6, problems


def test_pre_issue11_gke_yaml_also_fails_on_every_retry():
    problems = _texts(FIXTURES / "pre_issue11.gke-a100.yaml")
    retry = [p for p in problems if ": retry: " in p]
    # finding 3: max duration 1800 s / 600 s against 86400 s / 21600 s timeouts, on all seven retried tasks
    assert sorted(p.split(":")[0] for p in retry) == sorted(
        [f"task {t} (root)" for t in ("aggregate", "build-graphs", "ingest", "preflight")]
        + [f"task {t} (comp-for-loop-1)" for t in SEED_TASKS])
    assert ("task train-gnn (comp-for-loop-1): retry: backoffMaxDuration 1800s < (retries 3 + 1) x timeout "
            "86400s: Argo counts it from the first attempt, so a long attempt is never retried") in retry
    assert ("task ingest (root): retry: backoffMaxDuration 600s < (retries 2 + 1) x timeout 21600s: Argo counts "
            "it from the first attempt, so a long attempt is never retried") in retry
    assert len(problems) == 6 + 7, problems


def test_cli_prints_one_line_per_problem_and_exits_1():
    fixture = FIXTURES / "pre_issue11.gke-a100.yaml"
    proc = subprocess.run([sys.executable, "-m", "pipelines.spec_check", str(fixture)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 13 and all(line.startswith(f"{fixture}: task ") for line in lines)
    seed = [line for line in lines if "input seed" in line]
    assert len(seed) == 3 and all("STRING" in line and "NUMBER_INTEGER" in line for line in seed)


def test_cli_refuses_an_unreadable_file_or_a_bad_version(tmp_path, capsys):
    assert main([str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "x.yaml").write_text("a: 1\n")
    assert main([str(tmp_path / "x.yaml")]) == 2
    assert main(["--min-backend", "two", str(default_output("local"))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def _good():
    return load(default_output("gke-a100"))


def _loop_dag(spec):
    return spec["components"]["comp-for-loop-1"]


def test_a_wrong_loop_item_type_is_found():
    spec, platform = _good()
    _loop_dag(spec)["inputDefinitions"]["parameters"]["pipelinechannel--seeds-loop-item"]["parameterType"] = "STRING"
    problems = [str(p) for p in check(spec, platform)]
    assert len([p for p in problems if "input seed: producer" in p]) == 3
    assert any("loop item" in p for p in problems)


def test_constant_task_output_and_missing_inputs_are_found():
    spec, platform = _good()
    tasks = _loop_dag(spec)["dag"]["tasks"]
    tasks["train-gnn"]["inputs"]["parameters"]["seed"] = {"runtimeValue": {"constant": "7"}}
    tasks["train-fusion"]["inputs"]["parameters"]["seed"] = {"runtimeValue": {"constant": 7.5}}
    # a task output: give train-transformer a STRING output and feed it to train-fusion's run_key (fine) and
    # overrides (STRUCT: wrong)
    spec["components"]["comp-train-transformer"].setdefault("outputDefinitions", {})["parameters"] = {
        "Output": {"parameterType": "STRING"}}
    tasks["train-fusion"]["inputs"]["parameters"]["run_key"] = {
        "taskOutputParameter": {"producerTask": "train-transformer", "outputParameterKey": "Output"}}
    tasks["train-fusion"]["inputs"]["parameters"]["overrides"] = {
        "taskOutputParameter": {"producerTask": "train-transformer", "outputParameterKey": "Output"}}
    del tasks["train-transformer"]["inputs"]["parameters"]["profile"]
    problems = [str(p) for p in check(spec, platform)]
    assert ("task train-gnn (comp-for-loop-1): input seed: producer constant \"7\" is STRING, consumer expects "
            "NUMBER_INTEGER") in problems
    assert ("task train-fusion (comp-for-loop-1): input seed: producer constant 7.5 is NUMBER_DOUBLE, consumer "
            "expects NUMBER_INTEGER") in problems
    assert ("task train-fusion (comp-for-loop-1): input overrides: producer output Output of task "
            "train-transformer is STRING, consumer expects STRUCT") in problems
    assert not [p for p in problems if "input run_key" in p]
    assert ("task train-transformer (comp-for-loop-1): input profile (STRING): required, but the task passes "
            "nothing") in problems
    assert len(problems) == 4, problems


def test_a_default_of_the_wrong_type_is_found():
    spec, platform = _good()
    spec["root"]["inputDefinitions"]["parameters"]["require_gpu"]["defaultValue"] = "false"
    spec["root"]["inputDefinitions"]["parameters"]["seeds"]["defaultValue"] = [42, 7.5]
    problems = [str(p) for p in check(spec, platform)]
    assert "pipeline input require_gpu: default \"false\" is STRING, declared BOOLEAN" in problems
    assert ("task for-loop-1 (root): loop item pipelinechannel--seeds-loop-item: the default of seeds holds "
            "NUMBER_DOUBLE/NUMBER_INTEGER values, the item input is NUMBER_INTEGER") in problems


@pytest.mark.parametrize("policy, timeout, fragment", [
    ({"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}, 1800,
     "backoffMaxDuration 3600s < (retries 3 + 1) x timeout 1800s"),
    ({"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0}, 1800, "KFP passes 0 to Argo"),
    ({"maxRetryCount": 2, "backoffDuration": "60s", "backoffFactor": 1.5, "backoffMaxDuration": "99999s"}, 10,
     "backoffFactor 1.5: Argo parses the factor as an integer"),
    ({"maxRetryCount": 2, "backoffDuration": "60s", "backoffFactor": 2.0, "backoffMaxDuration": "99999s"}, None,
     "no timeout"),
    ({"maxRetryCount": 2, "backoffDuration": "60s", "backoffFactor": 2.0, "backoffMaxDuration": "7200s"}, 2400, None),
    ({"maxRetryCount": 0, "backoffDuration": "0s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}, 86400, None),
])
def test_retry_rule(policy, timeout, fragment):
    why = spec_check.retry_problem(policy, timeout)
    assert (why is None) if fragment is None else (fragment in why)


def test_argo_retry_strategy_is_what_kfp_sends():
    assert argo_retry_strategy({"maxRetryCount": 3, "backoffDuration": "120s", "backoffFactor": 2.0,
                                "backoffMaxDuration": "346440s"}) == {
        "limit": "3", "backoff": {"duration": "120", "factor": "2", "maxDuration": "346440"}}
    assert argo_retry_strategy({"maxRetryCount": 1})["backoff"] == {"duration": "0", "factor": "0", "maxDuration": "0"}


def test_features_above_the_minimum_are_reported():
    spec, platform = _good()
    assert spec_check.feature_problems(spec, platform, MIN_BACKEND) == []
    older = [str(p) for p in spec_check.feature_problems(spec, platform, "2.5.0")]
    assert any("`dsl.Collected`" in p and "2.14.0" in p for p in older)
    assert any("inside a ParallelFor" in p and "2.14.0" in p for p in older)
    assert len(older) == 2, older
    used = spec_check.features_used(spec, platform)
    assert "parallelism" in spec_check.features_used(*load(default_output("local")))  # local: one seed at a time
    assert {"parallel-for", "collected", "retry", "retry-in-sub-dag", "timeout", "tolerations",
            "empty-dir", "image-pull-policy", "secret-as-env", "config-map-as-env", "node-selector",
            "pipeline-placeholders", "caching"} <= set(used)
    assert "k8s-names-from-parameters" not in used  # names are constants, with the pre-2.5 secretName beside them
    cfg = copy.deepcopy(platform)
    executors = cfg["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors["exec-ingest"]["secretAsEnv"][0]["optional"] = True
    (problem,) = spec_check.feature_problems(spec, cfg, "2.14.0")
    assert problem.where == "executor exec-ingest" and "optional=True" in problem.what and "2.15.0" in problem.what


def test_docs_show_the_minimum_and_the_same_feature_table():
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    assert f"**Minimum KFP backend: {MIN_BACKEND}**" in docs
    rows = re.findall(r"^\| (.+?) \| (\d+\.\d+\.\d+) \| (.+?) \|$", docs, flags=re.M)
    assert rows == [(f.what, f.since, f.source) for f in FEATURES]
