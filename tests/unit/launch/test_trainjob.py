"""The TrainJob a `nodes: 2` compile profile makes a training step create: compiled into the task's environment,
turned into the object the step creates, and valid against the TrainJob CRD of the pinned Trainer release
(tests/fixtures/trainer/, v2.3.0)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from trainer_crd import FIXTURES, TRAINER_TAG, crd, problems

from pipelines.compile import compile_pipeline
from pipelines.platform import PROFILES_DIR, ProfileError, load_profile, trainjob_template
from pipelines.spec_check import check_file
from streamguard.errors import UserError
from streamguard.launch.command import TrainCommand
from streamguard.launch.trainjob import (
    TEMPLATE_ENV,
    WORKDIR,
    TrainJobTemplate,
    describe,
    finished,
    trainjob_body,
    trainjob_name,
)

GKE = (PROFILES_DIR / "gke-a100.yaml").read_text()
TWO_NODES = GKE.replace("accelerator_count: 1\n", "accelerator_count: 1\n    gpus_per_task: 8\n    nodes: 2\n")


def profile_file(tmp_path: Path, text: str = TWO_NODES) -> Path:
    p = tmp_path / "gke-a100.yaml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("two-nodes")
    out = compile_pipeline(d / "out.yaml", str(profile_file(d)))
    return out, list(yaml.safe_load_all(out.read_text()))


def gnn_command(store: str = "s3://bucket/sg") -> TrainCommand:
    return TrainCommand(family="gnn", seed=42, dirs={"data": "/in/data", "graphs": "/in/graphs", "model": "/out/model",
                                                     "result": "/out/result"},
                        profile="production", overrides={"gnn": {"epochs": 3}}, store=store, run_key="run-123")


def body_for(template: TrainJobTemplate) -> dict:
    cmd = gnn_command().moved(WORKDIR)
    return trainjob_body(template, trainjob_name("run-123", "gnn", 42), "kubeflow",
                         ["python", "-m", "streamguard.launch", "node", "--", "-m", "streamguard", *cmd.argv()])


def test_pinned_crd_is_the_trainjob_crd_of_the_tag():
    c = crd()
    assert (c["kind"], c["spec"]["group"], c["spec"]["names"]["kind"], c["spec"]["scope"]) == (
        "CustomResourceDefinition", "trainer.kubeflow.org", "TrainJob", "Namespaced")
    assert [v["name"] for v in c["spec"]["versions"]] == ["v1alpha1"]
    assert TRAINER_TAG in (FIXTURES / "README.md").read_text()
    # the runtime the TrainJob references by default names its replicated job and container `node`
    (runtime,) = [d for d in yaml.safe_load_all((FIXTURES / "torch_distributed.yaml").read_text()) if d]
    assert (runtime["kind"], runtime["metadata"]["name"]) == ("ClusterTrainingRuntime", "torch-distributed")
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    assert [c["name"] for c in job["template"]["spec"]["template"]["spec"]["containers"]] == ["node"]
    assert job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"


def test_the_compiled_follower_task(compiled):
    """nodes: 2 -> each training task only creates and follows a TrainJob: CPU image and pool, no GPU, the GPU
    pool's timeout and retries, the TrainJob template in its environment; pre-flight stays on the GPU pool."""
    path, docs = compiled
    assert check_file(path) == []
    executors = docs[0]["deploymentSpec"]["executors"]
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    prof = load_profile(profile_file(path.parent)).kubernetes
    for stage in ("train-transformer", "train-gnn", "train-fusion"):
        c = executors[f"exec-{stage}"]["container"]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert "/streamguard-cpu:" in c["image"], stage
        assert "accelerator" not in c["resources"], stage
        assert c["resources"]["resourceCpuRequest"] == prof.cpu.cpu_request, stage
        assert "STREAMGUARD_REQUIRE_CUDA" not in env and "STREAMGUARD_NPROC_PER_NODE" not in env, stage
        assert "nodeSelector" not in k8s[f"exec-{stage}"] and "tolerations" not in k8s[f"exec-{stage}"], stage
        assert int(k8s[f"exec-{stage}"]["activeDeadlineSeconds"]) == prof.gpu.timeout_seconds, stage
        t = TrainJobTemplate.from_json(env[TEMPLATE_ENV])
        assert t == trainjob_template(load_profile(profile_file(path.parent)))
        assert (t.num_nodes, t.procs_per_node, t.gpus_per_node) == (2, 8, 8)
        assert "/streamguard-cuda:" in t.image and t.env == {"STREAMGUARD_REQUIRE_CUDA": "1"}
    pre = executors["exec-preflight"]["container"]
    assert pre["resources"]["accelerator"]["resourceCount"] == "1" and "/streamguard-cuda:" in pre["image"]
    assert TEMPLATE_ENV not in {e["name"] for e in pre.get("env", [])}
    retry = {name: t.get("retryPolicy") for c in docs[0]["components"].values() if "dag" in c
             for name, t in c["dag"]["tasks"].items()}
    assert retry["train-gnn"]["maxRetryCount"] == prof.gpu.retry.num_retries


def test_the_trainjob_validates_against_the_pinned_crd(compiled):
    _, docs = compiled
    env = {e["name"]: e["value"] for e in docs[0]["deploymentSpec"]["executors"]["exec-train-gnn"]["container"]["env"]}
    body = body_for(TrainJobTemplate.from_json(env[TEMPLATE_ENV]))
    assert problems(body) == []
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                  "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    res = trainer["resourcesPerNode"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "8"
    assert res["requests"]["cpu"] == "8" and res["limits"]["memory"] == "72Gi"
    env = {e["name"]: e for e in trainer["env"]}
    assert env["MINIO_SECRET_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "streamguard-minio",
                                                                     "key": "MINIO_SECRET_KEY"}}
    assert env["STORE_RETRY_BUDGET_S"]["valueFrom"] == {"configMapKeyRef": {"name": "streamguard-config",
                                                                           "key": "STORE_RETRY_BUDGET_S"}}
    assert env["STREAMGUARD_REQUIRE_CUDA"] == {"name": "STREAMGUARD_REQUIRE_CUDA", "value": "1"}
    assert not [e for e in env if e.startswith("PET_")]  # the torch plugin's own; a TrainJob setting one is refused
    assert spec["activeDeadlineSeconds"] == 86400
    (patch,) = spec["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]
    assert job["name"] == "node" and pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["spec"]["volumes"]
    (node,) = pod["spec"]["containers"]
    assert {m["mountPath"] for m in node["volumeMounts"]} == {"/dev/shm", WORKDIR}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # the command runs this step's training on every node, from the node's copy of the inputs
    command = trainer["command"]
    assert command[:4] == ["python", "-m", "streamguard.launch", "node"]
    program = command[command.index("--") + 1:]
    assert program[:3] == ["-m", "streamguard", "train-gnn"]
    assert program[program.index("--data") + 1] == f"{WORKDIR}/data"
    assert program[program.index("--store") + 1] == "s3://bucket/sg"


@pytest.mark.parametrize("mutate, expected", [
    (lambda b: b["spec"]["trainer"].__setitem__("numNode", 2), "Additional properties are not allowed ('numNode'"),
    (lambda b: b["spec"]["trainer"].__setitem__("numNodes", "2"), "'2' is not of type 'integer'"),
    (lambda b: b["spec"].pop("runtimeRef"), "'runtimeRef' is a required property"),
    (lambda b: b["spec"]["trainer"]["env"].append(dict(b["spec"]["trainer"]["env"][0])), "duplicate name"),
    (lambda b: b["metadata"].__setitem__("name", "SG_gnn"), "does not match"),
    (lambda b: b["metadata"].__setitem__("name", "sg-" + "x" * 61), "longer than 63"),
    (lambda b: b["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"].__setitem__("hostNetwork", True),
     "Additional properties are not allowed ('hostNetwork'"),
])
def test_the_validator_refuses_what_the_api_server_would(mutate, expected):
    """The check above can fail: each of these breaks the TrainJob the way the API server would refuse."""
    body = body_for(trainjob_template(load_profile("gke-a100")))
    assert problems(body) == []
    broken = copy.deepcopy(body)
    mutate(broken)
    found = problems(broken)
    assert any(expected in p for p in found), found


def test_names_are_stable_per_step_and_valid():
    a = trainjob_name("run-1", "transformer", 2025)
    assert a == trainjob_name("run-1", "transformer", 2025)  # a retry of the step finds its TrainJob
    assert len({a, trainjob_name("run-2", "transformer", 2025), trainjob_name("run-1", "gnn", 2025),
                trainjob_name("run-1", "transformer", 7)}) == 4
    for name in (a, trainjob_name("", "fusion", -1), trainjob_name("x" * 200, "transformer", 2 ** 40)):
        assert len(name) <= 40 and problems({"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                                             "metadata": {"name": name},
                                             "spec": {"runtimeRef": {"name": "torch-distributed"}}}) == [], name


def test_template_json_round_trip_and_refusals(tmp_path):
    t = trainjob_template(load_profile(profile_file(tmp_path)))
    assert TrainJobTemplate.from_json(t.to_json()) == t
    with pytest.raises(UserError, match=f"{TEMPLATE_ENV}: not valid JSON"):
        TrainJobTemplate.from_json("{")
    with pytest.raises(UserError, match=f"{TEMPLATE_ENV}.num_nodes: expected an integer, got 'two'"):
        TrainJobTemplate.from_json(json.dumps({**json.loads(t.to_json()), "num_nodes": "two"}))
    with pytest.raises(UserError, match=f"{TEMPLATE_ENV}.procs_per_node: 0: must be >= 1"):
        TrainJobTemplate.from_json(json.dumps({**json.loads(t.to_json()), "procs_per_node": 0}))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("nodes: 2", "nodes: 0"), "kubernetes.gpu.nodes: 0: must be >= 1"),
    (lambda t: t.replace("gpus_per_task: 8", "gpus_per_task: -1"), "kubernetes.gpu.gpus_per_task: -1: must be >= 1"),
    (lambda t: t.replace("    cpu_request: \"2\"\n", "    cpu_request: \"2\"\n    nodes: 2\n"),
     "kubernetes.cpu.nodes: 2: only the GPU pool's training tasks run distributed"),
    (lambda t: t + "  trainer: {runtime_kind: JobSet}\n",
     "kubernetes.trainer.runtime_kind: unknown value 'JobSet' (allowed: ClusterTrainingRuntime, TrainingRuntime)"),
    (lambda t: t + "  trainer: {poll_seconds: 0}\n", "kubernetes.trainer.poll_seconds: 0: must be >= 1"),
])
def test_a_bad_distributed_setting_names_its_field(tmp_path, edit, message):
    path = profile_file(tmp_path, edit(TWO_NODES))
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_a_namespaced_runtime_can_be_chosen(tmp_path):
    prof = load_profile(profile_file(tmp_path, TWO_NODES + "  trainer: {runtime: my-torch, runtime_kind: "
                                                            "TrainingRuntime, poll_seconds: 30}\n"))
    body = body_for(trainjob_template(prof))
    assert body["spec"]["runtimeRef"] == {"name": "my-torch", "apiGroup": "trainer.kubeflow.org",
                                          "kind": "TrainingRuntime"}
    assert trainjob_template(prof).poll_seconds == 30 and problems(body) == []


def test_status_lines_and_terminal_states():
    job = {"status": {}}
    assert finished(job) is None and "no status yet" in describe(job)
    job = {"status": {"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0}]}}
    assert finished(job) is None and describe(job) == "jobs node: active 2, ready 2"
    job["status"]["conditions"] = [{"type": "Suspended", "status": "False", "reason": "Resumed"},
                                   {"type": "Complete", "status": "True", "reason": "AllJobsCompleted",
                                    "message": "jobset completed successfully"}]
    assert finished(job) == "Complete"
    assert describe(job).startswith("Suspended=False Resumed; Complete=True AllJobsCompleted: jobset completed")
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    assert finished(job) == "Failed"
    job["status"]["conditions"] = [{"type": "Failed", "status": "False"}]
    assert finished(job) is None
