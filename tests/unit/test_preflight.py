"""Pre-flight: every check passes on a good setup and fails on a broken one; the gate writes both reports and
raises PreflightError (exit 4) when a required check fails."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from streamguard import families
from streamguard import preflight as pf
from streamguard.config import load_config
from streamguard.data.samples import read_split, write_samples
from streamguard.errors import EXIT_PREFLIGHT, PreflightError, UserError
from streamguard.smoke import ProbeContext
from tests.http_double import HTTPRequest, JSONServer


@pytest.fixture(scope="module")
def tiny(tiny_data):
    return tiny_data


@pytest.fixture
def data_copy(tiny, tmp_path):
    """A writable copy of the tiny dataset (data + graphs) for tests that break it."""
    data, graphs, cfg = tiny
    shutil.copytree(data, tmp_path / "data")
    shutil.copytree(graphs, tmp_path / "graphs")
    return tmp_path / "data", tmp_path / "graphs", cfg


# ------------------------------------------------------------------ accelerator
def test_accelerator_passes_on_cpu_when_no_gpu_is_asked_for():
    r = pf.check_accelerator(require_gpu=False)
    assert r.status == "pass" and r.values["torch"] == torch.__version__


def test_accelerator_fails_when_the_profile_asks_for_a_gpu_and_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = pf.check_accelerator(require_gpu=True)
    assert r.status == "fail" and "CUDA is not available" in r.message and r.required


@pytest.mark.skipif(torch.cuda.is_available(), reason="fakes a broken CUDA device on a CPU-only build")
def test_accelerator_fails_when_cuda_reports_a_device_but_kernels_fail(monkeypatch):
    class Props:
        name, total_memory, major, minor = "Fake A100", 40 * 2**30, 8, 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    r = pf.check_accelerator(require_gpu=True)
    assert r.status == "fail" and "CUDA kernel failed" in r.message
    assert r.values["capability"] == "8.0" and r.values["bf16"] is True and r.values["memory_bytes"] == 40 * 2**30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_accelerator_passes_on_a_real_gpu():
    r = pf.check_accelerator(require_gpu=True)
    assert r.status in ("pass", "warn") and r.values["kernel_ok"] and r.values["memory_bytes"] > 0


# ------------------------------------------------------------------ safety self-tests
def test_atomic_json_self_test_passes_for_the_real_writer():
    r = pf.check_atomic_json()
    assert r.status == "pass", r.message
    assert r.values["crash_at_fsync"] == {"raised": True, "old_file_intact": True, "leftover_files": []}
    assert r.values["crash_at_replace"] == {"raised": True, "old_file_intact": True, "leftover_files": []}


def _in_place_writer(path, obj):
    with open(path, "wb") as f:  # truncates the old file first: a crash leaves a half-written one
        f.write(json.dumps(obj).encode())
        f.flush()
        os.fsync(f.fileno())


def _leaky_writer(path, obj):
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(obj).encode())
    os.replace(tmp, path)  # no cleanup when this fails


def test_atomic_json_self_test_fails_for_an_in_place_writer():
    r = pf.check_atomic_json(_in_place_writer)
    assert r.status == "fail" and "corrupted the previous file" in r.message


def test_atomic_json_self_test_fails_for_a_writer_that_leaves_temp_files():
    r = pf.check_atomic_json(_leaky_writer)
    assert r.status == "fail" and "left temporary files" in r.message and "os.replace" in r.message


def test_amp_order_self_test_passes_for_the_training_step():
    r = pf.check_amp_order()
    assert r.status == "pass", r.message
    assert r.values["calls"] == ["scale", "backward", "unscale_", "clip", "step", "optimizer.step", "update"]
    assert r.values["norm_at_step"] == pytest.approx(1.0, rel=1e-3)


def test_amp_order_self_test_fails_when_clipping_comes_before_unscale():
    def clip_then_unscale(loss, optimizer, scaler, params, max_norm):  # the prototype's bug
        params = list(params)
        scaler.scale(loss).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        return float(norm)

    r = pf.check_amp_order(clip_then_unscale)
    assert r.status == "fail" and "clip → unscale_" in r.message


def test_amp_order_self_test_fails_when_nothing_is_clipped():
    def no_clip(loss, optimizer, scaler, params, max_norm):
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        return 0.0

    r = pf.check_amp_order(no_clip)
    assert r.status == "fail" and "expected scale → backward → unscale_ → clip" in r.message


def test_lr_fallback_self_test_passes_for_find_lr():
    r = pf.check_lr_fallback()
    assert r.status == "pass", r.message
    assert r.values["source"] == "fallback" and r.values["weights_restored"] and "simulated" in r.values["reason"]


def test_lr_fallback_self_test_fails_when_the_finder_raises():
    def crashing_finder(model, make_optimizer, batches, *, loss, **kw):  # lets the loss's exception escape
        for _ in range(10):
            loss(model, batches[0])

    r = pf.check_lr_fallback(crashing_finder)
    assert r.status == "fail" and "raised instead of falling back" in r.message


def test_lr_fallback_self_test_fails_when_the_finder_hides_the_failure():
    from types import SimpleNamespace

    r = pf.check_lr_fallback(lambda *a, **k: SimpleNamespace(lr=1e-3, source="finder", reason=None))
    assert r.status == "fail" and "expected the fallback" in r.message


# ------------------------------------------------------------------ data
def test_data_check_passes_on_a_clean_split_with_the_real_tokenizer(tiny):
    data, graphs, cfg = tiny
    tok = ProbeContext(str(data), str(graphs), cfg)
    try:
        r = pf.check_data(str(data), str(graphs), 512,
                          tokenizer_fn=lambda: families.transformer.probe_parts(tok).tokenizer)
    finally:
        tok.close()
    assert r.status == "pass", r.message
    assert r.values["truncation"]["method"] == "tokenizer" and r.values["truncation"]["n_truncated"] == 0
    assert r.values["duplicates_across_splits"] == {"train/valid": 0, "train/test": 0, "valid/test": 0}
    assert all(r.values[f"{s}_graphs_missing"] == 0 for s in ("train", "valid", "test"))


def test_data_check_fails_on_a_split_with_leakage(data_copy):
    data, graphs, cfg = data_copy
    train, test = read_split(data, "train"), read_split(data, "test")
    leaked = train[0]
    leaked_copy = type(leaked)(id="leak-1", func="/* same function */\n" + leaked.func.replace("\n", "\n  "),
                               target=leaked.target)
    write_samples(data / "test.jsonl", test + [leaked_copy])
    r = pf.check_data(str(data), None, None)
    assert r.status == "fail" and r.values["duplicates_across_splits"]["train/test"] == 1
    assert "functions shared across splits" in r.message


def test_data_check_fails_on_a_shared_id_and_on_a_missing_graph(data_copy):
    data, graphs, cfg = data_copy
    valid = read_split(data, "valid")
    extra = type(valid[0])(id=read_split(data, "train")[0].id, func="int brand_new(void) { return 42; }",
                           target=valid[0].target)
    write_samples(data / "valid.jsonl", valid + [extra])
    r = pf.check_data(str(data), str(graphs), None)
    assert r.status == "fail"
    assert r.values["ids_across_splits"]["train/valid"] == 1 and r.values["valid_graphs_missing"] == 1
    assert "without a graph" in r.message


def test_data_check_fails_on_a_missing_or_empty_split(data_copy):
    data, graphs, cfg = data_copy
    (data / "valid.jsonl").write_text("")
    assert "split is empty" in pf.check_data(str(data), None, None).message
    (data / "valid.jsonl").unlink()
    r = pf.check_data(str(data), None, None)
    assert r.status == "fail" and "valid.jsonl: split file missing" in r.message


def test_data_check_fails_on_a_single_class_and_warns_on_extreme_balance(data_copy):
    data, graphs, cfg = data_copy
    test = read_split(data, "test")
    write_samples(data / "test.jsonl", [s for s in test if s.target == 0])
    r = pf.check_data(str(data), None, None)
    assert r.status == "fail" and "split test has a single class" in r.message
    train = read_split(data, "train")
    safe, vuln = [s for s in train if s.target == 0], [s for s in train if s.target == 1]
    write_samples(data / "train.jsonl", safe + vuln[:2])
    write_samples(data / "test.jsonl", test)
    r = pf.check_data(str(data), None, None)
    assert r.status == "warn" and "extreme label balance" in r.message


def test_data_check_warns_when_many_functions_are_truncated_estimate_without_tokenizer(tiny):
    data, graphs, cfg = tiny
    r = pf.check_data(str(data), None, 16)
    assert r.status == "warn" and "longer than the transformer's 1 window(s) of 16 (14 tokens, estimate)" in r.message
    assert "raise transformer.max_windows" in r.message
    assert r.values["truncation"]["share"] > 0.9 and "C lexical tokens" in r.values["truncation"]["method"]
    r = pf.check_data(str(data), None, 16, tokenizer_fn=lambda: 1 / 0)  # a tokenizer that cannot load: estimate
    assert r.status == "warn" and "tokenizer unavailable: ZeroDivisionError" in r.values["truncation"]["method"]


def test_data_check_counts_what_each_family_sees_in_the_gate(tiny, tmp_path):
    data, graphs, cfg = tiny
    js, md = str(tmp_path / "r.json"), str(tmp_path / "r.md")
    report = pf.preflight(str(data), str(graphs), cfg, js, md, options=pf.PreflightOptions(checks=["data"]))
    check = next(c for c in report["checks"] if c["name"] == "data")
    stats = {st["view"]: st for st in check["values"]["views"]["stats"]}
    assert set(stats) == {"lexical", "transformer", "gnn", "fusion"} and check["values"]["views"]["skipped"] == {}
    n = sum(check["values"][f"{s}_size"] for s in ("train", "valid", "test"))
    assert all(st["samples"] == n for st in stats.values())
    assert stats["transformer"]["setting"] == "transformer.max_windows" and stats["gnn"]["setting"] == "gnn.max_nodes"
    both = min(stats["transformer"]["identical_pairs"], stats["gnn"]["identical_pairs"])
    assert stats["fusion"]["identical_pairs"] <= both
    assert stats["lexical"]["pairs"] == 0 and "identical pairs" not in check["message"]  # the demo has no pairs


def test_data_check_warns_when_pairs_are_identical_in_a_familys_view(tmp_path):
    """Pairs that differ only past the first window: identical transformer inputs; the warning names the fix."""
    from streamguard.data.ingest import ingest

    body = "".join(f"    v = v * {k} + 1;\n" for k in range(30))
    rows = []
    for i in range(20):
        for t, tail in ((1, "buf[v] = 0;"), (0, "if (v < n) buf[v] = 0;")):
            rows.append({"idx": f"{i}-{t}", "func": f"int f{i}(int v) {{\n{body}    {tail}\n}}\n", "target": t,
                         "pair_id": f"p{i}"})
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config("test", sets=["transformer.max_windows=1", "data.split_fractions=[0.6,0.2,0.2]"])
    ingest(str(tmp_path / "raw.jsonl"), str(tmp_path / "data"), cfg.data)
    report = pf.preflight(str(tmp_path / "data"), None, cfg, str(tmp_path / "r.json"), str(tmp_path / "r.md"),
                          options=pf.PreflightOptions(checks=["data"]))
    check = report["checks"][0]
    stats = {st["view"]: st for st in check["values"]["views"]["stats"]}
    assert stats["lexical"]["identical_pairs"] == 0 and stats["transformer"]["identical_pair_share"] == 1.0
    assert stats["transformer"]["conflicting_share"] == 1.0 and stats["transformer"]["truncated_share"] == 1.0
    assert check["status"] == "warn" and "raise transformer.max_windows (only 0 of them are identical lexically)" \
        in check["message"]
    assert "identical pairs per view: lexical 0/20, transformer 20/20" in check["message"]
    assert set(check["values"]["views"]["skipped"]) == {"gnn", "fusion"}  # no graphs given
    wide = load_config("test", sets=["transformer.max_windows=8", "data.split_fractions=[0.6,0.2,0.2]"])
    report = pf.preflight(str(tmp_path / "data"), None, wide, str(tmp_path / "r.json"), str(tmp_path / "r.md"),
                          options=pf.PreflightOptions(checks=["data"]))
    stats = {st["view"]: st for st in report["checks"][0]["values"]["views"]["stats"]}
    assert stats["transformer"]["identical_pairs"] == 0 and stats["transformer"]["truncated"] == 0


# ------------------------------------------------------------------ object store
def test_store_check_passes_on_both_backends(store):
    r = pf.check_store(store, load_config("test"), environ={})
    assert r.status == "pass", r.message
    assert r.values["lr_cache_location"].endswith("/lr_cache") and r.values["lr_cache_ttl_hours"] == 168.0
    assert not [k for k in store.list() if k.startswith("preflight/")]  # the probe object is gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_store_check_fails_fast_against_a_stopped_s3_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    from streamguard.storage import open_store

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for k, v in {"MINIO_ENDPOINT": f"127.0.0.1:{port}", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b",
                 "MINIO_SECURE": "false"}.items():
        monkeypatch.setenv(k, v)
    try:
        store = open_store("s3://sg-preflight/run")
        store.ensure_bucket()
        assert pf.check_store(store, load_config("test"), environ={}).status == "pass"
    finally:
        server.stop()
    t = time.time()
    r = pf.check_store(store, load_config("test"), environ={})
    assert r.status == "fail" and f"127.0.0.1:{port} unreachable" in r.message and r.required
    assert time.time() - t < 5


def test_store_check_fails_when_the_bucket_does_not_exist(s3_env):
    from streamguard.storage import open_store

    r = pf.check_store(open_store("s3://no-such-bucket-here/x"), load_config("test"), environ={})
    assert r.status == "fail" and "bucket 'no-such-bucket-here' does not exist" in r.message


def test_store_check_fails_on_a_bad_ttl_and_warns_when_the_configmap_ttl_differs(local_store):
    cfg = load_config("test", sets=["train.lr_cache_ttl_hours=0"])
    r = pf.check_store(local_store, cfg, environ={})
    assert r.status == "fail" and "lr_cache_ttl_hours=0.0" in r.message
    r = pf.check_store(local_store, load_config("test"), environ={"LR_CACHE_TTL_HOURS": "24"})
    assert r.status == "warn" and "LR_CACHE_TTL_HOURS='24'" in r.message


def test_store_check_is_skipped_without_a_store():
    r = pf.check_store(None, load_config("test"))
    assert r.status == "skip" and not r.required


# ------------------------------------------------------------------ cluster
def _node(name, labels, gpus=None, ready=True):
    alloc = {"cpu": "12", "memory": "85Gi"}
    if gpus is not None:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class KubeDouble:
    """A tiny HTTP double of the Kubernetes API: GET /api/v1/nodes and GET /api/v1/namespaces/NS/secrets/NAME."""

    def __init__(self, nodes=(), secrets=None, nodes_status=200):
        self.nodes, self.secrets, self.nodes_status = list(nodes), dict(secrets or {}), nodes_status
        self.requests: list[str] = []
        self.server = JSONServer(self._get).start()
        self.host = self.server.url

    def _get(self, req: HTTPRequest) -> tuple[int, dict]:
        path = req.path
        self.requests.append(path)
        parts = path.strip("/").split("/")
        if req.method != "GET":
            return 405, _status(405, "method not allowed")
        if path == "/api/v1/nodes":
            if self.nodes_status != 200:
                return self.nodes_status, _status(self.nodes_status, "nodes is forbidden")
            return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": self.nodes}
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            ns, name = parts[3], parts[5]
            if (ns, name) in self.secrets:
                data = {k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[ns, name].items()}
                return 200, {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
                             "metadata": {"name": name, "namespace": ns}, "data": data}
            return 404, _status(404, f'secrets "{name}" not found')
        return 404, _status(404, "not found")

    def api_client(self):
        from kubernetes import client

        conf = client.Configuration(host=self.host)
        return client.ApiClient(conf)

    def close(self):
        self.server.stop()


def _status(code, message):
    reason = {403: "Forbidden", 404: "NotFound"}.get(code, "Error")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


POOL = {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
SECRET = {("kubeflow", "streamguard-minio"): {"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"}}


@pytest.fixture
def kube():
    doubles = []

    def make(**kw):
        d = KubeDouble(**kw)
        doubles.append(d)
        return d

    yield make
    for d in doubles:
        d.close()


def test_cluster_check_is_skipped_outside_a_pod(tmp_path):
    r = pf.check_cluster(environ={})
    assert r.status == "skip" and "KUBERNETES_SERVICE_HOST" in r.message and not r.required
    r = pf.check_cluster(environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, sa_dir=str(tmp_path))
    assert r.status == "skip" and "no service-account token" in r.message


def test_cluster_check_passes_with_gpu_nodes_in_the_pool_and_the_secret(kube):
    d = kube(nodes=[_node("cpu-1", {"pool": "cpu"}), _node("a100-1", POOL, gpus=1), _node("a100-2", POOL, gpus=1),
                    _node("t4-1", {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, gpus=1)],
             secrets=SECRET)
    r = pf.check_cluster(require_gpu=True, node_selector=POOL, namespace="kubeflow", api_client=d.api_client(),
                         environ={})
    assert r.status == "pass", r.message
    assert [n["name"] for n in r.values["gpu_nodes"]] == ["a100-1", "a100-2"] and r.values["gpus_allocatable"] == 2
    assert r.values["secret_keys"] == ["MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"]
    assert "sk" not in json.dumps(r.values)  # key names only, never values
    assert d.requests == ["/api/v1/nodes", "/api/v1/namespaces/kubeflow/secrets/streamguard-minio"]


def test_cluster_check_reads_the_node_selector_from_the_environment(kube):
    d = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets=SECRET)
    env = {pf.NODE_SELECTOR_ENV: "cloud.google.com/gke-accelerator=nvidia-tesla-t4", "POD_NAMESPACE": "kubeflow"}
    r = pf.check_cluster(require_gpu=True, api_client=d.api_client(), environ=env)
    assert r.status == "fail" and "no Ready node matching cloud.google.com/gke-accelerator=nvidia-tesla-t4" in r.message
    assert r.values["namespace"] == "kubeflow"


def test_cluster_check_fails_without_allocatable_gpus_in_the_pool(kube):
    d = kube(nodes=[_node("a100-1", POOL, gpus=0), _node("a100-2", POOL, gpus=1, ready=False),
                    _node("a100-3", POOL)], secrets=SECRET)
    r = pf.check_cluster(require_gpu=True, node_selector=POOL, namespace="kubeflow", api_client=d.api_client(),
                         environ={})
    assert r.status == "fail" and r.required
    assert "has allocatable nvidia.com/gpu (3 of 3 nodes match the selector)" in r.message
    r = pf.check_cluster(require_gpu=False, node_selector=POOL, namespace="kubeflow", api_client=d.api_client(),
                         environ={})
    assert r.status == "warn"  # a CPU-only run does not need the GPU pool


def test_cluster_check_fails_when_the_secret_is_missing(kube):
    d = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets={})
    r = pf.check_cluster(require_gpu=True, node_selector=POOL, namespace="kubeflow", api_client=d.api_client(),
                         environ={})
    assert r.status == "fail" and "Secret kubeflow/streamguard-minio not found" in r.message


def test_cluster_check_warns_when_nodes_may_not_be_listed(kube):
    d = kube(nodes_status=403, secrets=SECRET)
    r = pf.check_cluster(require_gpu=True, node_selector=POOL, namespace="kubeflow", api_client=d.api_client(),
                         environ={})
    assert r.status == "warn" and "cannot list nodes (403" in r.message and "ClusterRole" in r.message


def test_cluster_check_looks_up_the_secret_and_keys_the_compile_profile_names(kube, tmp_path):
    """Renaming the Secret (and its keys) in a compile profile reaches the gate: the compiled pre-flight task
    carries the new names, and the check, reading that task's environment, asks the API for them."""
    from pipelines.compile import compile_pipeline
    from pipelines.platform import PROFILES_DIR

    text = (PROFILES_DIR / "gke-a100.yaml").read_text().replace(
        "secret: streamguard-minio", "secret: team-minio").replace(
        "secret_env: {MINIO_ACCESS_KEY: MINIO_ACCESS_KEY, MINIO_SECRET_KEY: MINIO_SECRET_KEY}",
        "secret_env: {access-key: MINIO_ACCESS_KEY, secret-key: MINIO_SECRET_KEY}")
    assert "team-minio" in text and "access-key" in text
    (tmp_path / "gke-a100.yaml").write_text(text)
    spec = list(yaml.safe_load_all(compile_pipeline(tmp_path / "out.yaml", str(tmp_path / "gke-a100.yaml"))
                                   .read_text()))
    env = {e["name"]: e["value"]
           for e in spec[0]["deploymentSpec"]["executors"]["exec-preflight"]["container"]["env"]}
    assert env[pf.SECRET_NAME_ENV] == "team-minio" and env[pf.SECRET_KEYS_ENV] == "access-key,secret-key"
    (mounted,) = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-preflight"]["secretAsEnv"]
    assert mounted["secretName"] == "team-minio"  # the Secret the pods read is the one the gate checks

    env["POD_NAMESPACE"] = "kubeflow"
    renamed = {("kubeflow", "team-minio"): {"access-key": "ak", "secret-key": "sk"}}
    d = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets=renamed)
    r = pf.check_cluster(require_gpu=True, api_client=d.api_client(), environ=env)
    assert r.status == "pass", r.message
    assert r.values["secret"] == "team-minio" and "Secret kubeflow/team-minio present" in r.message
    assert d.requests[-1] == "/api/v1/namespaces/kubeflow/secrets/team-minio"
    old = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets=SECRET)  # only the old name exists: the gate fails
    r = pf.check_cluster(require_gpu=True, api_client=old.api_client(), environ=env)
    assert r.status == "fail" and "Secret kubeflow/team-minio not found" in r.message
    old_keys = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets={("kubeflow", "team-minio"): SECRET[
        "kubeflow", "streamguard-minio"]})
    r = pf.check_cluster(require_gpu=True, api_client=old_keys.api_client(), environ=env)
    assert r.status == "fail" and "Secret kubeflow/team-minio lacks key(s) access-key, secret-key" in r.message


def test_the_gate_passes_its_cluster_options_to_the_check(kube, tiny, tmp_path):
    data, graphs, cfg = tiny
    d = kube(nodes=[_node("a100-1", POOL, gpus=1)], secrets={("ml", "other"): {"K": "v"}})
    js, md = _paths(tmp_path)
    report = pf.preflight(str(data), str(graphs), cfg, js, md, options=pf.PreflightOptions(
        checks=["cluster"], node_selector=POOL, namespace="ml", secret_name="other", secret_keys=["K"],
        k8s_api_client=d.api_client()))
    (check,) = report["checks"]
    assert check["status"] == "pass" and check["values"]["secret_keys"] == ["K"], check["message"]
    assert d.requests == ["/api/v1/nodes", "/api/v1/namespaces/ml/secrets/other"]


def test_node_selector_parsing():
    assert pf.parse_node_selector("a=b, c=d") == {"a": "b", "c": "d"} and pf.parse_node_selector("") == {}
    with pytest.raises(UserError, match="expected key=value"):
        pf.parse_node_selector("gpu")


# ------------------------------------------------------------------ the gate
def _paths(tmp_path):
    return str(tmp_path / "r" / "preflight_report.json"), str(tmp_path / "r" / "preflight_report.md")


def test_preflight_passes_on_good_data_and_writes_both_reports(tiny, tmp_path, local_store, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    data, graphs, cfg = tiny
    js, md = _paths(tmp_path)
    t = time.time()
    report = pf.preflight(str(data), str(graphs), cfg, js, md, store=local_store)
    took = time.time() - t
    names = [c["name"] for c in report["checks"]]
    assert names == ["accelerator", "safety_atomic_json", "safety_amp_order", "safety_lr_fallback", "data",
                     "object_store", "cluster", "smoke_transformer", "smoke_gnn", "smoke_fusion",
                     "memory_transformer", "memory_gnn"]
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status.pop("cluster") == "skip" and status.pop("data") in ("pass", "warn")  # test profile: max_length 64
    assert set(status.values()) == {"pass"}, report
    assert report["passed"] and json.loads(Path(js).read_text())["passed"]
    text = Path(md).read_text()
    assert "**PASSED**" in text and "| smoke_gnn | PASS | yes |" in text and "## Measured values" in text
    assert took < 20, f"pre-flight took {took:.1f} s on the test profile"


def test_preflight_fails_with_exit_4_and_reports_when_a_required_check_fails(tiny, tmp_path, monkeypatch):
    data, graphs, cfg = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    js, md = _paths(tmp_path)
    with pytest.raises(PreflightError) as e:
        pf.preflight(str(data), str(graphs), cfg, js, md,
                     options=pf.PreflightOptions(require_gpu=True, checks=["accelerator", "data"]))
    assert e.value.exit_code == EXIT_PREFLIGHT and "accelerator: the profile asks for a GPU" in str(e.value)
    report = json.loads(Path(js).read_text())
    assert not report["passed"] and report["failed"] == ["accelerator"]
    assert "**FAILED: accelerator**" in Path(md).read_text()


def test_preflight_smoke_fails_for_an_unlearnable_setup(tiny, tmp_path):
    data, graphs, cfg = tiny
    cfg = load_config("test", sets=["gnn.lr=0"])
    js, md = _paths(tmp_path)
    with pytest.raises(PreflightError, match="smoke_gnn: cannot overfit 32 samples"):
        pf.preflight(str(data), str(graphs), cfg, js, md,
                     options=pf.PreflightOptions(checks=["smoke"], smoke_families=["gnn"]))
    check = json.loads(Path(js).read_text())["checks"][0]
    assert check["name"] == "smoke_gnn" and check["status"] == "fail" and len(check["values"]["attempts"]) == 3


def test_preflight_memory_fails_when_the_limit_is_below_the_need(tiny, tmp_path):
    data, graphs, cfg = tiny
    js, md = _paths(tmp_path)
    with pytest.raises(PreflightError, match="memory_gnn: .*above 90%"):
        pf.preflight(str(data), str(graphs), cfg, js, md, options=pf.PreflightOptions(
            checks=["memory"], memory_families=["gnn"], memory_total_bytes=32 * 2**20))
    report = json.loads(Path(js).read_text())
    assert report["checks"][0]["values"]["total_source"] == "given"


def test_preflight_skips_the_probes_when_the_data_check_fails(data_copy, tmp_path):
    data, graphs, cfg = data_copy
    (data / "test.jsonl").unlink()
    js, md = _paths(tmp_path)
    with pytest.raises(PreflightError, match="test.jsonl: split file missing"):
        pf.preflight(str(data), str(graphs), cfg, js, md,
                     options=pf.PreflightOptions(checks=["data", "smoke", "memory"]))
    report = json.loads(Path(js).read_text())
    assert report["failed"] == ["data"]
    assert all(c["status"] == "skip" for c in report["checks"][1:]) and len(report["checks"]) == 6


def test_a_crashing_check_is_a_failed_check_with_one_line(tiny, tmp_path, monkeypatch):
    data, graphs, cfg = tiny
    monkeypatch.setattr(pf.object_store, "check_store", lambda *a, **k: 1 / 0)
    js, md = _paths(tmp_path)
    with pytest.raises(PreflightError, match="object_store: check crashed: ZeroDivisionError: division by zero"):
        pf.preflight(str(data), str(graphs), cfg, js, md, options=pf.PreflightOptions(checks=["object_store"]))
    assert "Traceback" in json.loads(Path(js).read_text())["checks"][0]["values"]["traceback"]


def test_check_selection_from_argument_and_environment(tiny, tmp_path, monkeypatch):
    data, graphs, cfg = tiny
    js, md = _paths(tmp_path)
    with pytest.raises(UserError, match="unknown 'gpu_burn'"):
        pf.preflight(str(data), str(graphs), cfg, js, md, options=pf.PreflightOptions(checks=["gpu_burn"]))
    monkeypatch.setenv(pf.CHECKS_ENV, "accelerator, safety")
    report = pf.preflight(str(data), str(graphs), cfg, js, md)
    assert [c["name"] for c in report["checks"]] == ["accelerator", "safety_atomic_json", "safety_amp_order",
                                                     "safety_lr_fallback"]


def test_unknown_checks_exit_2_in_one_line_listing_the_known_ones(monkeypatch, tmp_path, capsys):
    from streamguard.cli import main

    monkeypatch.setenv(pf.CHECKS_ENV, "data,gpu_burn")
    assert main(["preflight", "--data", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown 'gpu_burn'" in err[0] and "Traceback" not in err[0]
    assert f"(known: {', '.join(pf.CHECKS)})" in err[0] and list(pf.CHECKS) == [
        "accelerator", "safety", "data", "object_store", "cluster", "smoke", "memory"]
    assert not (tmp_path / "r").exists()  # refused before any check ran or any report was written


def test_a_group_that_is_not_required_reports_its_failure_without_stopping_the_run(tiny, tmp_path, monkeypatch):
    data, graphs, cfg = tiny
    monkeypatch.setitem(pf.CHECKS, "accelerator", pf.Check(pf.CHECKS["accelerator"].run, required=False))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    js, md = _paths(tmp_path)
    report = pf.preflight(str(data), str(graphs), cfg, js, md,
                          options=pf.PreflightOptions(require_gpu=True, checks=["accelerator"]))
    (check,) = report["checks"]
    assert report["passed"] and check["status"] == "fail" and check["required"] is False


def test_markdown_escapes_table_breaking_messages():
    md = pf.render_markdown([pf.CheckResult("data", "warn", "a | b\nc", {"x": "1|2"})])
    assert "| data | WARN | yes | 0.00 | a \\| b c |" in md and "x = 1\\|2" in md
