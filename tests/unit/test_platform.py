"""Compile profiles: loading and validation, and what applying one does to the compiled pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.compile import compile_pipeline
from pipelines.compile import main as compile_main
from pipelines.platform import PROFILES_DIR, ProfileError, available_profiles, load_profile

REPO = Path(__file__).resolve().parents[2]
GKE = (PROFILES_DIR / "gke-a100.yaml").read_text()


def docs(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def executors(path: Path) -> dict[str, dict]:
    return docs(path)[0]["deploymentSpec"]["executors"]


def caching(path: Path) -> dict[str, bool]:
    spec = docs(path)[0]
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: t.get("cachingOptions", {}).get("enableCache", False) for d in dags for name, t in d["tasks"].items()
            if not name.startswith("for-loop")}


def write_profile(tmp_path: Path, text: str, name: str = "gke-a100") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_the_three_profiles_load():
    assert {"local", "gke-a100", "generic-a100"} <= set(available_profiles())
    local = load_profile("local")
    assert local.kubernetes is None and local.gpu_stages() == ()
    for name, (key, value) in {"gke-a100": ("cloud.google.com/gke-accelerator", "nvidia-tesla-a100"),
                               "generic-a100": ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB")}.items():
        p = load_profile(name)
        assert p.name == name
        k = p.kubernetes
        assert k.gpu.node_selector == {key: value}
        assert k.gpu.accelerator_count == 1 and k.gpu.accelerator_type == "nvidia.com/gpu"
        assert k.cpu.accelerator_count == 0 and k.cpu.node_selector == {} and k.cpu.tolerations == ()
        assert k.secret == "streamguard-minio" and k.config_map == "streamguard-config"
        assert set(p.gpu_stages()) == {"train_transformer", "train_gnn", "train_fusion", "preflight"}


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("accelerator_count: 1", "accelerator_count: two"),
     "kubernetes.gpu.accelerator_count: expected an integer"),
    (lambda t: t.replace("shm_size: 16Gi", "shm_size: 16Gi\n    shm: 1"), "kubernetes.gpu.shm: unknown field"),
    (lambda t: t.replace("node_selector: {cloud.google.com/gke-accelerator: nvidia-tesla-a100}", "node_selector: {}"),
     "kubernetes.gpu.node_selector: empty"),
    (lambda t: t.replace("accelerator_count: 1", "accelerator_count: 0"), "accelerator_count: must be >= 1"),
    (lambda t: t.replace("preflight_on_gpu: true", "preflight_on_gpu: yes please"),
     "preflight_on_gpu: expected true/false"),
    (lambda t: t + "  cpu: [1, 2]\n", "kubernetes.cpu: expected a mapping"),
    (lambda t: t.replace("effect: NoSchedule", "effect: NoScheduel"),
     "kubernetes.gpu.tolerations[0].effect: unknown value 'NoScheduel' "
     "(allowed: NoSchedule, PreferNoSchedule, NoExecute)"),
    (lambda t: t.replace("operator: Exists", "operator: exists"),
     "kubernetes.gpu.tolerations[0].operator: unknown value 'exists' (allowed: Exists, Equal)"),
    # retries that could never fire for a full-length attempt (Argo counts max duration from the first start)
    (lambda t: t.replace("backoff_factor: 2}\n  cpu:", "backoff_factor: 2, backoff_max_duration: 1800s}\n  cpu:"),
     "kubernetes.gpu.retry.backoff_max_duration: 1800s = 1800s < (num_retries 3 + 1) x timeout_seconds 86400 = "
     "345600s"),
    (lambda t: t.replace("    timeout_seconds: 21600\n", ""), "kubernetes.cpu.retry: retries need "
                                                             "kubernetes.cpu.timeout_seconds"),
    (lambda t: t.replace("backoff_duration: 30s, backoff_factor: 2}", "backoff_duration: 30s, backoff_factor: 1.5}"),
     "kubernetes.cpu.retry.backoff_factor: 1.5: must be a whole number"),
    (lambda t: t.replace("backoff_duration: 30s,", "backoff_duration: soon,"), "kubernetes.cpu.retry:"),
    (lambda t: t.replace("image_pull_policy: Always", "image_pull_policy: IfNotPresent"),
     "kubernetes.image_pull_policy: 'IfNotPresent' with mutable tags never pulls a rebuilt image"),
    (lambda t: t.replace("image_pull_policy: Always", "image_pull_policy: Sometimes"),
     "kubernetes.image_pull_policy: 'Sometimes': expected one of Always, IfNotPresent, Never"),
    (lambda t: t.replace("registry: ghcr.io/streamguard", "registry: ghcr.io/streamguard\nimage_digests: {cpu: abc}"),
     "image_digests.cpu: 'abc': expected"),
])
def test_a_bad_profile_names_file_and_field(tmp_path, edit, message):
    path = write_profile(tmp_path, edit(GKE))
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_profile_name_must_match_its_file(tmp_path):
    with pytest.raises(ProfileError, match="name: 'gke-a100' must match the file name"):
        load_profile(write_profile(tmp_path, GKE, name="my-cluster"))


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="available: generic-a100, gke-a100, gke-a100x8, local"):
        load_profile("aks-h100")


def test_compile_cli_reports_a_bad_profile_in_one_line(capsys):
    assert compile_main(["--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: compile profile 'nope'") and err.count("\n") == 1


def test_compile_cli_rejects_a_mistyped_choice_in_one_line(tmp_path, capsys):
    path = write_profile(tmp_path, GKE.replace("effect: NoSchedule", "effect: NoScheduel"))
    assert compile_main(["--profile", str(path), "--output", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tolerations[0].effect: unknown value 'NoScheduel'" in err
    assert not (tmp_path / "out.yaml").exists()


def test_compile_refuses_a_retry_that_cannot_fire_in_one_line(tmp_path):
    bad = write_profile(tmp_path, GKE.replace("backoff_duration: 30s, backoff_factor: 2}",
                                              "backoff_duration: 30s, backoff_factor: 2, backoff_max_duration: 600s}"))
    proc = subprocess.run([sys.executable, "-m", "pipelines.compile", "--profile", str(bad), "--output",
                           str(tmp_path / "out.yaml")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: kubernetes.cpu.retry.backoff_max_duration: 600s = 600s < (num_retries 2 + 1)" in proc.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_gpu_means_gpu_unless_the_profile_allows_cpu(tmp_path):
    """GPU-pool tasks (training + pre-flight) get STREAMGUARD_REQUIRE_CUDA=1; allow_cpu_training: true drops it;
    pre-flight off the GPU pool runs on the CPU image and does not require CUDA itself."""
    def env(path):
        return {name: {e["name"]: e["value"] for e in ex["container"].get("env", [])}
                for name, ex in executors(path).items()}

    strict = env(compile_pipeline(tmp_path / "strict.yaml", str(write_profile(tmp_path, GKE))))
    assert {n for n, e in strict.items() if e.get("STREAMGUARD_REQUIRE_CUDA") == "1"} == {
        "exec-train-transformer", "exec-train-gnn", "exec-train-fusion", "exec-preflight"}
    lenient = env(compile_pipeline(tmp_path / "lenient.yaml", str(write_profile(
        tmp_path, GKE.replace("allow_cpu_training: false", "allow_cpu_training: true")))))
    assert not [n for n, e in lenient.items() if "STREAMGUARD_REQUIRE_CUDA" in e]
    cpu_gate = env(compile_pipeline(tmp_path / "cpu_gate.yaml", str(write_profile(
        tmp_path, GKE.replace("preflight_on_gpu: true", "preflight_on_gpu: false")))))
    assert "STREAMGUARD_REQUIRE_CUDA" not in cpu_gate["exec-preflight"]
    assert cpu_gate["exec-train-gnn"]["STREAMGUARD_REQUIRE_CUDA"] == "1"


def test_image_pull_secrets_and_digests(tmp_path):
    text = (GKE.replace("image_pull_secrets: []", "image_pull_secrets: [streamguard-registry]")
            .replace("image_pull_policy: Always", "image_pull_policy: IfNotPresent")
            .replace("registry: ghcr.io/streamguard",
                     "registry: ghcr.io/streamguard\nimage_digests: {cpu: 'sha256:" + "a" * 64 + "', cuda: 'sha256:"
                     + "b" * 64 + "'}"))
    out = compile_pipeline(tmp_path / "out.yaml", str(write_profile(tmp_path, text)))
    ex = executors(out)
    assert ex["exec-ingest"]["container"]["image"] == "ghcr.io/streamguard/streamguard-cpu@sha256:" + "a" * 64
    assert ex["exec-train-gnn"]["container"]["image"] == "ghcr.io/streamguard/streamguard-cuda@sha256:" + "b" * 64
    k8s = docs(out)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for cfg in k8s.values():
        assert cfg["imagePullPolicy"] == "IfNotPresent"
        assert [s["secretName"] for s in cfg["imagePullSecret"]] == ["streamguard-registry"]


def test_registry_and_gpu_placement_are_profile_settings(tmp_path):
    text = (GKE.replace("registry: ghcr.io/streamguard", "registry: registry.example.test/ml/")
            .replace("preflight_on_gpu: true", "preflight_on_gpu: false")
            .replace("accelerator_count: 1", "accelerator_count: 2"))
    out = compile_pipeline(tmp_path / "out.yaml", str(write_profile(tmp_path, text)))
    ex = executors(out)
    version = (REPO / "pyproject.toml").read_text().split('version = "', 1)[1].split('"', 1)[0]
    images = {name: e["container"]["image"] for name, e in ex.items()}
    assert images["exec-train-transformer"] == f"registry.example.test/ml/streamguard-cuda:{version}"
    assert images["exec-ingest"] == f"registry.example.test/ml/streamguard-cpu:{version}"
    assert all(i.startswith("registry.example.test/ml/streamguard-") for i in images.values())
    # pre-flight off the GPU pool: CPU image, no GPU, no GPU node selector
    assert images["exec-preflight"].startswith("registry.example.test/ml/streamguard-cpu:")
    assert "accelerator" not in ex["exec-preflight"]["container"]["resources"]
    platform = docs(out)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" not in platform["exec-preflight"]
    assert ex["exec-train-gnn"]["container"]["resources"]["accelerator"]["resourceCount"] == "2"


def test_training_caching_is_a_compile_flag(tmp_path):
    off = caching(compile_pipeline(tmp_path / "off.yaml", "local"))
    on = caching(compile_pipeline(tmp_path / "on.yaml", "local", cache_training=True))
    training = ["train-transformer", "train-gnn", "train-fusion"]
    assert [off[t] for t in training] == [False] * 3
    assert [on[t] for t in training] == [True] * 3
    for c in (off, on):
        assert c["ingest"] and c["build-graphs"] and not c["preflight"]


def test_cache_training_env_is_what_make_compile_passes(tmp_path):
    """`make compile CACHE_TRAINING=1` exports CACHE_TRAINING=1 to `python -m pipelines.compile`."""
    env = {**os.environ, "CACHE_TRAINING": "1"}
    out = tmp_path / "cached.yaml"
    proc = subprocess.run([sys.executable, "-m", "pipelines.compile", "--profile", "gke-a100", "--output", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "training cache on" in proc.stdout
    assert caching(out)["train-fusion"] is True


def test_preflight_is_told_which_gpu_pool_to_check():
    import yaml

    from pipelines.compile import DEFAULT_OUTPUT

    for path, selector in (("pipelines/compiled/streamguard_training.gke-a100.yaml",
                            "cloud.google.com/gke-accelerator=nvidia-tesla-a100"),
                           ("pipelines/compiled/streamguard_training.generic-a100.yaml",
                            "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB")):
        spec = next(yaml.safe_load_all(open(path)))
        env = spec["deploymentSpec"]["executors"]["exec-preflight"]["container"]["env"]
        assert {"name": "STREAMGUARD_GPU_NODE_SELECTOR", "value": selector} in env
    local = next(yaml.safe_load_all(open(DEFAULT_OUTPUT)))
    assert "env" not in local["deploymentSpec"]["executors"]["exec-preflight"]["container"]
