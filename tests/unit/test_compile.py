"""The compiled pipeline, for every compile profile: golden YAML, GPU/CPU placement, credentials.

Each profile is compiled here (with dummy credentials in the environment) and must equal the
committed YAML byte for byte; the committed YAML is then parsed into KFP's own protobufs
(PipelineSpec, PlatformSpec, KubernetesExecutorConfig) and checked task by task.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.compile import compile_pipeline, default_output
from pipelines.platform import load_profile

REPO = Path(__file__).resolve().parents[2]
PROFILES = ["local", "gke-a100", "generic-a100", "gke-a100x8"]
CLUSTER_PROFILES = ["gke-a100", "generic-a100", "gke-a100x8"]
# The requirement, written out (not read back from the profile files).
GPU_NODE_SELECTOR = {
    "gke-a100": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    "generic-a100": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
    "gke-a100x8": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
                   "node.kubernetes.io/instance-type": "a2-highgpu-8g"},
}
# GPUs (and processes) per training task, written out: the 8-GPU profile runs torchrun with 8 processes.
TRAINING_GPUS = {"gke-a100": 1, "generic-a100": 1, "gke-a100x8": 8}
GPU_STAGES = {"train_transformer", "train_gnn", "train_fusion", "preflight"}
CPU_STAGES = {"source_version", "ingest", "build_graphs", "evaluate", "aggregate", "publish"}
SECRET_ENV = {"MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY": "MINIO_SECRET_KEY"}
CONFIG_MAP_ENV = {k: k for k in ("MINIO_ENDPOINT", "MINIO_SECURE", "STREAMGUARD_STORE", "LR_CACHE_TTL_HOURS",
                                  "STORE_RETRY_BUDGET_S")}
# Injected into the environment while compiling: none may end up in the YAML.
DUMMY_CREDENTIALS = {
    "MINIO_ACCESS_KEY": "sg-test-dummy-access-5d1f0c",
    "MINIO_SECRET_KEY": "sg-test-dummy-secret-9a7e42b1",
    "MINIO_ENDPOINT": "sg-test-dummy-minio.invalid:9443",
    "AWS_SECRET_ACCESS_KEY": "sg-test-dummy-aws-secret-03bd",
    "STREAMGUARD_STORE": "s3://sg-test-dummy-bucket-77c2",
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, str]:
    """Every profile compiled now, with dummy credentials in the environment."""
    mp = pytest.MonkeyPatch()
    for k, v in DUMMY_CREDENTIALS.items():
        mp.setenv(k, v)
    mp.delenv("CACHE_TRAINING", raising=False)
    out = tmp_path_factory.mktemp("compiled")
    try:
        return {p: compile_pipeline(out / f"{p}.yaml", p).read_text() for p in PROFILES}
    finally:
        mp.undo()


def parse(text: str):
    """(PipelineSpec, {executor label: KubernetesExecutorConfig}) of a compiled YAML."""
    docs = list(yaml.safe_load_all(text))
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    k8s = {}
    if len(docs) > 1:
        platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
        for label, cfg in platform.platforms["kubernetes"].deployment_spec.executors.items():
            k8s[label] = json_format.ParseDict(json_format.MessageToDict(cfg), k8s_pb2.KubernetesExecutorConfig())
    return spec, k8s


def tasks(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, tuple]:
    """stage (component name) -> (PipelineTaskSpec, executor label, PipelineContainerSpec), in every DAG."""
    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    out = {}
    for dag in dags:
        for name, task in dag.tasks.items():
            comp = spec.components[task.component_ref.name]
            if comp.executor_label:
                out[name.replace("-", "_")] = (task, comp.executor_label,
                                               deployment.executors[comp.executor_label].container)
    return out


@pytest.fixture(scope="module", params=PROFILES)
def compiled(request):
    profile = request.param
    spec, k8s = parse(default_output(profile).read_text())
    return profile, tasks(spec), k8s


@pytest.mark.parametrize("profile", PROFILES)
def test_committed_yaml_is_what_the_code_compiles(fresh, profile):
    committed = default_output(profile)
    assert committed.is_file(), f"{committed} missing: run `python -m pipelines.compile --all` and commit it"
    assert fresh[profile] == committed.read_text(), (
        f"{committed.relative_to(REPO)} is stale: run `python -m pipelines.compile --all` and commit the result")


def test_output_paths():
    assert default_output("local") == REPO / "pipelines" / "streamguard_training.yaml"
    assert default_output("gke-a100") == REPO / "pipelines" / "compiled" / "streamguard_training.gke-a100.yaml"


def test_every_stage_is_present(compiled):
    _, by_stage, _ = compiled
    assert set(by_stage) == GPU_STAGES | CPU_STAGES


@pytest.mark.parametrize("profile", CLUSTER_PROFILES)
def test_gpu_tasks(profile):
    prof = load_profile(profile).kubernetes
    spec, k8s = parse(default_output(profile).read_text())
    by_stage = tasks(spec)
    for stage in sorted(GPU_STAGES):
        task, label, container = by_stage[stage]
        where = f"{profile}/{stage}"
        acc = container.resources.accelerator
        assert acc.resource_type == "nvidia.com/gpu", where
        env = {e.name: e.value for e in container.env}
        if stage == "preflight":
            assert int(acc.resource_count) == prof.gpu.accelerator_count == 1, where
            assert "STREAMGUARD_NPROC_PER_NODE" not in env, where
        else:
            assert int(acc.resource_count) == TRAINING_GPUS[profile], where
            # one process per GPU: more than one runs under torchrun (streamguard/launch)
            assert env.get("STREAMGUARD_NPROC_PER_NODE", "1") == str(TRAINING_GPUS[profile]), where
        r = container.resources
        assert (r.resource_cpu_request, r.resource_cpu_limit) == (prof.gpu.cpu_request, prof.gpu.cpu_limit), where
        assert (r.resource_memory_request, r.resource_memory_limit) == (prof.gpu.memory_request,
                                                                         prof.gpu.memory_limit), where
        assert re.fullmatch(r"[\w.\-/:]+/streamguard-cuda:\d+\.\d+\.\d+\S*", container.image), where

        cfg = k8s[label]
        assert dict(cfg.node_selector.labels) == GPU_NODE_SELECTOR[profile], where
        assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" and t.operator in ("Exists", "Equal")
                   for t in cfg.tolerations), where
        shm = [m for m in cfg.empty_dir_mounts if m.mount_path == "/dev/shm"]
        assert len(shm) == 1 and shm[0].medium == "Memory" and shm[0].size_limit, where
        assert cfg.active_deadline_seconds > 0, where
        assert cfg.image_pull_policy == "Always", where
        # GPU means GPU: the task stops at once without a usable CUDA device (streamguard/train/device.py)
        assert {e.name: e.value for e in container.env}["STREAMGUARD_REQUIRE_CUDA"] == "1", where


@pytest.mark.parametrize("profile", CLUSTER_PROFILES)
def test_cpu_tasks_stay_off_the_gpu_pool(profile):
    spec, k8s = parse(default_output(profile).read_text())
    for stage in sorted(CPU_STAGES):
        _, label, container = tasks(spec)[stage]
        where = f"{profile}/{stage}"
        assert not container.resources.HasField("accelerator"), where
        assert re.fullmatch(r"[\w.\-/:]+/streamguard-cpu:\S+", container.image), where
        cfg = k8s[label]
        gpu_labels = set().union(*GPU_NODE_SELECTOR.values())
        assert not gpu_labels & set(cfg.node_selector.labels), where
        assert not [t for t in cfg.tolerations if "gpu" in t.key], where
        assert container.resources.resource_cpu_request and container.resources.resource_memory_limit, where
        assert "STREAMGUARD_REQUIRE_CUDA" not in {e.name for e in container.env}, where


def test_no_task_of_any_profile_requests_a_gpu_outside_the_gpu_stages(compiled):
    profile, by_stage, _ = compiled
    for stage, (_, _, container) in by_stage.items():
        if stage not in GPU_STAGES or profile == "local":
            acc = container.resources.accelerator
            assert not acc.resource_count and not acc.count and not acc.resource_type, f"{profile}/{stage}"


def test_every_cluster_task_reads_credentials_from_the_secret_and_config_map(compiled):
    profile, by_stage, k8s = compiled
    if profile == "local":
        assert k8s == {}, "the local profile must add no Kubernetes settings"
        return
    for stage, (_, label, container) in by_stage.items():
        cfg = k8s[label]
        (secret,) = cfg.secret_as_env
        assert secret.secret_name == "streamguard-minio"
        assert {e.secret_key: e.env_var for e in secret.key_to_env} == SECRET_ENV
        assert not secret.optional
        cm, *more = cfg.config_map_as_env
        assert cm.config_map_name == "streamguard-config" and not cm.optional
        assert {e.config_map_key: e.env_var for e in cm.key_to_env} == CONFIG_MAP_ENV
        # publish alone reads the Model Registry address (a training pod never depends on that key)
        assert [(m.config_map_name, m.optional, {e.config_map_key: e.env_var for e in m.key_to_env}) for m in more] \
            == ([("streamguard-config", False, {"MODEL_REGISTRY_URL": "MODEL_REGISTRY_URL"})] if stage == "publish"
                else []), stage
        # plain container env holds no credential, and no store: STREAMGUARD_STORE is the cluster's (ConfigMap)
        assert not {e.name for e in container.env} & {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ENDPOINT",
                                                      "STREAMGUARD_STORE"}, stage
        assert cfg.image_pull_policy == "Always", stage


def test_caching(compiled):
    profile, by_stage, _ = compiled
    cache = {stage: task.caching_options.enable_cache for stage, (task, _, _) in by_stage.items()}
    assert cache["ingest"] and cache["build_graphs"], profile
    assert not cache["train_transformer"] and not cache["train_gnn"] and not cache["train_fusion"], profile
    assert not cache["preflight"], "the pre-flight gate checks live state: never cached"
    assert not cache["source_version"], "the data's version is read on every run: never cached"


def test_local_profile_adds_no_kubernetes_settings():
    text = default_output("local").read_text()
    assert len(list(yaml.safe_load_all(text))) == 1  # no PlatformSpec document
    spec, _ = parse(text)
    for stage, (task, _, container) in tasks(spec).items():
        assert not task.HasField("retry_policy"), stage
        assert not container.HasField("resources"), stage
        # the publish step's card names its image (lineage); nothing else is set
        assert {e.name for e in container.env} == ({"STREAMGUARD_IMAGE"} if stage == "publish" else set()), stage


def _secret_values() -> list[tuple[str, str]]:
    """(where, value) of every credential we know: the injected dummies and manifests' env files."""
    values = [(f"dummy {k}", v) for k, v in DUMMY_CREDENTIALS.items()]
    for env_file in sorted((REPO / "manifests").glob("**/*.env*")):
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#") and len(value.strip()) >= 4:
                values.append((f"{env_file.relative_to(REPO)}:{key.strip()}", value.strip()))
    return values


def test_no_secret_value_in_any_compiled_yaml(fresh):
    values = _secret_values()
    assert any("MINIO_SECRET_KEY" in where for where, _ in values) or not (REPO / "manifests").is_dir()
    files = {str(p.relative_to(REPO)): p.read_text() for p in
             [REPO / "pipelines" / "streamguard_training.yaml",
              *sorted((REPO / "pipelines" / "compiled").glob("*.yaml"))]}
    files.update({f"fresh:{p}": text for p, text in fresh.items()})
    assert len(files) >= 2 * len(PROFILES)
    leaks = [f"{where} in {name}" for name, text in files.items() for where, value in values if value in text]
    assert not leaks, f"credential values found in compiled YAML (values not shown): {leaks}"


@pytest.mark.parametrize("profile", CLUSTER_PROFILES)
def test_retries_fire_for_a_full_length_attempt(profile):
    """Read back what the backend gets: each task's retryPolicy as KFP's Argo compiler turns it into Argo's
    retryStrategy, against the pod timeout (activeDeadlineSeconds) of its executor."""
    from pipelines.spec_check import argo_retry_strategy

    prof = load_profile(profile).kubernetes
    docs = list(yaml.safe_load_all(default_output(profile).read_text()))
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    dags = [docs[0]["root"]["dag"]] + [c["dag"] for c in docs[0]["components"].values() if "dag" in c]
    seen = set()
    for dag in dags:
        for name, task in dag["tasks"].items():
            comp = docs[0]["components"][task["componentRef"]["name"]]
            if "executorLabel" not in comp:
                continue
            stage = name.replace("-", "_")
            seen.add(stage)
            timeout = int(executors[comp["executorLabel"]]["activeDeadlineSeconds"])
            if stage == "preflight":  # a failed gate fails the run at once, freeing its GPU
                assert "retryPolicy" not in task and timeout == prof.preflight_timeout_seconds == 1800
                continue
            pool = prof.gpu if stage in GPU_STAGES else prof.cpu
            argo = argo_retry_strategy(task["retryPolicy"])
            retries = int(argo["limit"])
            assert retries == pool.retry.num_retries >= 1, stage
            assert timeout == pool.timeout_seconds, stage
            assert int(argo["backoff"]["factor"]) >= 2, stage  # Argo parses it as an integer
            assert int(argo["backoff"]["duration"]) > 0, stage
            assert int(argo["backoff"]["maxDuration"]) >= (retries + 1) * timeout, stage
    assert seen == GPU_STAGES | CPU_STAGES


def test_parameters_are_typed_end_to_end(compiled):
    """Deliverable 1: seeds are integers from the pipeline input through the loop item to every training task,
    and data_version reaches ingest (its cache key)."""
    profile, by_stage, _ = compiled
    docs = list(yaml.safe_load_all(default_output(profile).read_text()))
    root = docs[0]["root"]
    seeds = root["inputDefinitions"]["parameters"]["seeds"]
    assert seeds["parameterType"] == "LIST" and seeds["defaultValue"] == [42, 2025, 7]
    assert all(type(s) is int for s in seeds["defaultValue"])  # not 42.0
    (loop_key,) = [k for k, t in root["dag"]["tasks"].items() if "parameterIterator" in t]
    loop = root["dag"]["tasks"][loop_key]
    assert loop["taskInfo"]["name"] == loop_key
    body = docs[0]["components"][loop["componentRef"]["name"]]
    assert body["inputDefinitions"]["parameters"][loop["parameterIterator"]["itemInput"]]["parameterType"] == \
        "NUMBER_INTEGER"
    for stage in ("train_transformer", "train_gnn", "train_fusion"):
        task, _, _ = by_stage[stage]
        assert task.inputs.parameters["seed"].component_input_parameter == loop["parameterIterator"]["itemInput"]
    # data_version (given, or read at run time by the uncached source_version step) is in ingest's cache key
    ingest, _, _ = by_stage["ingest"]
    version, _, _ = by_stage["source_version"]
    ref = ingest.inputs.parameters["data_version"].task_output_parameter
    assert (ref.producer_task, ref.output_parameter_key) == ("source-version", "Output")
    assert version.inputs.parameters["data_version"].component_input_parameter == "data_version"
    assert version.inputs.parameters["input_uri"].component_input_parameter == "input_uri"
    assert root["inputDefinitions"]["parameters"]["data_version"]["parameterType"] == "STRING"


def test_eval_uris_is_a_typed_list_from_the_pipeline_input_to_the_evaluate_step(compiled):
    """eval_uris: List[str] = [] (issue 14) reaches the evaluate step as a LIST; every seed's bundle (a Model of
    train_fusion) reaches it through the loop's fan-in, and its output reaches aggregate."""
    profile, by_stage, _ = compiled
    docs = list(yaml.safe_load_all(default_output(profile).read_text()))
    root = docs[0]["root"]
    param = root["inputDefinitions"]["parameters"]["eval_uris"]
    assert param["parameterType"] == "LIST" and param["defaultValue"] == [] and param["isOptional"]
    ev, _, _ = by_stage["evaluate"]
    assert ev.inputs.parameters["eval_uris"].component_input_parameter == "eval_uris"
    comp = docs[0]["components"][ev.component_ref.name]["inputDefinitions"]
    assert comp["parameters"]["eval_uris"]["parameterType"] == "LIST"
    assert comp["artifacts"]["bundles"]["isArtifactList"] and \
        comp["artifacts"]["bundles"]["artifactType"]["schemaTitle"] == "system.Model"
    bundles = ev.inputs.artifacts["bundles"].task_output_artifact
    assert bundles.output_artifact_key.endswith("bundle")
    agg, _, _ = by_stage["aggregate"]
    ext = agg.inputs.artifacts["external"].task_output_artifact
    assert (ext.producer_task, ext.output_artifact_key) == ("evaluate", "evaluation")


@pytest.mark.parametrize("profile", PROFILES)
def test_publish_follows_aggregate_with_a_typed_promote_flag_and_no_registry_address(profile):
    """``promote: bool`` reaches the publish task as a BOOLEAN (spec_check holds the types end to end); the
    Model Registry address is cluster configuration (ConfigMap), never a value in the YAML."""
    text = default_output(profile).read_text()
    root = next(yaml.safe_load_all(text))["root"]
    assert root["inputDefinitions"]["parameters"]["promote"] == {"defaultValue": True, "isOptional": True,
                                                                 "parameterType": "BOOLEAN"}
    task = root["dag"]["tasks"]["publish"]
    assert {"aggregate", "evaluate", "ingest"} <= set(task["dependentTasks"])
    assert task["inputs"]["parameters"]["promote"] == {"componentInputParameter": "promote"}
    assert set(task["inputs"]["artifacts"]) == {"bundles", "data", "external", "summary"}
    assert "model-registry-service" not in text and not re.search(r"MODEL_REGISTRY_URL\W+value", text)
