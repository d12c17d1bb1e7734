"""`make submit`, `make schedule` and `make runs` against a double of the KFP v2beta1 REST API.

The test starts a small HTTP server on 127.0.0.1 that implements the endpoints the
`kfp` CLI and `kfp.Client` call and records every request, runs the exact Make targets
(`kfp` CLI for uploads, runs and lists; kfp.Client for recurring runs) with KFP_ENDPOINT
pointing at it, and asserts what was sent: the compiled pipeline spec uploaded as a new
pipeline version, the run's parameters (typed, data_version filled from the data) and
pipeline version, and the recurring run's cron, enabled state, max concurrency, catch-up
and typed parameters.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pytest
import yaml

from tests.http_double import HTTPRequest, JSONServer

REPO = Path(__file__).resolve().parents[2]
API = "/apis/v2beta1"
CREATED = "2026-01-01T00:00:00Z"
PACKAGE = REPO / "pipelines" / "compiled" / "streamguard_training.gke-a100.yaml"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


class KfpApiDouble:
    """Just enough of the KFP v2beta1 API for the kfp CLI; ``requests`` holds every request received."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = JSONServer(self._serve)
        self.endpoint = self.server.url

    def _serve(self, http: HTTPRequest) -> tuple[int, dict]:
        req = {"method": http.method, "path": http.path, "query": http.query,
               "content_type": http.header("Content-Type") or "", "body": http.raw}
        with self._lock:
            self.requests.append(req)
            status, reply = self.dispatch(req)
            req["status"] = status
        return status, reply

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

    # --- request handling -------------------------------------------------------------------------
    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    @staticmethod
    def _filter_name(req: dict) -> str | None:
        raw = req["query"].get("filter", [None])[0]
        if not raw:
            return None
        for p in json.loads(raw).get("predicates", []):
            if p.get("key") in ("display_name", "name") and p.get("operation") in ("EQUALS", 1):
                return p.get("stringValue")
        return None

    @staticmethod
    def multipart(req: dict) -> dict[str, bytes]:
        msg = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + req["content_type"].encode() + b"\r\n\r\n" + req["body"])
        return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in msg.iter_parts()}

    def dispatch(self, req: dict) -> tuple[int, dict]:
        m, path, q = req["method"], req["path"], req["query"]
        if path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if m == "GET" and path == f"{API}/pipelines":
            name = self._filter_name(req)
            found = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if m == "POST" and path == f"{API}/pipelines/upload":
            p = {"pipeline_id": self._id("pipeline"), "display_name": q["name"][0], "created_at": CREATED}
            self.pipelines[p["pipeline_id"]] = p
            v = {"pipeline_id": p["pipeline_id"], "pipeline_version_id": self._id("version"),
                 "display_name": q["name"][0], "created_at": CREATED}
            self.versions[v["pipeline_version_id"]] = v
            return 200, p
        if m == "POST" and path == f"{API}/pipelines/upload_version":
            pid = q["pipelineid"][0]
            if pid not in self.pipelines:
                return 404, {"error": f"pipeline {pid} not found"}
            v = {"pipeline_id": pid, "pipeline_version_id": self._id("version"), "display_name": q["name"][0],
                 "created_at": CREATED}
            self.versions[v["pipeline_version_id"]] = v
            return 200, v
        if m == "GET" and path == f"{API}/experiments":
            name = self._filter_name(req)
            found = [e for e in self.experiments.values() if name is None or e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if m == "POST" and path == f"{API}/experiments":
            e = {**json.loads(req["body"]), "experiment_id": self._id("experiment"), "created_at": CREATED,
                 "storage_state": "AVAILABLE"}
            self.experiments[e["experiment_id"]] = e
            return 200, e
        if m == "POST" and path == f"{API}/runs":
            r = {**json.loads(req["body"]), "run_id": self._id("run"), "created_at": CREATED, "state": "PENDING",
                 "storage_state": "AVAILABLE"}
            self.runs[r["run_id"]] = r
            return 200, r
        if m == "GET" and path.startswith(f"{API}/runs/") and path[len(API) + 6:] in self.runs:
            return 200, self.runs[path[len(API) + 6:]]
        if m == "GET" and path == f"{API}/runs":
            return 200, ({"runs": list(self.runs.values()), "total_size": len(self.runs)} if self.runs else {})
        if m == "POST" and path == f"{API}/recurringruns":
            r = {**json.loads(req["body"]), "recurring_run_id": self._id("recurring"), "created_at": CREATED,
                 "status": "ENABLED"}
            self.recurring_runs[r["recurring_run_id"]] = r
            return 200, r
        if m == "GET" and path == f"{API}/recurringruns":
            rr = list(self.recurring_runs.values())
            return 200, ({"recurringRuns": rr, "total_size": len(rr)} if rr else {})
        return 404, {"error": f"not implemented by the double: {m} {path}"}

    def sent(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == f"{API}{path}"]


@pytest.fixture
def kfp_api():
    with KfpApiDouble() as api:
        yield api


def make(target: str, api: KfpApiDouble | None, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    """Run ``make TARGET VAR=value ...`` in the repository, as a user would, with the venv first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("KF_PIPELINES", "MAKE"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    args = ["make", "--no-print-directory", "-C", str(REPO), target,
            f"VENV={Path(sys.executable).parent.parent}"]
    if api is not None:
        args.append(f"KFP_ENDPOINT={api.endpoint}")
    args += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def no_unknown_endpoints(api: KfpApiDouble) -> None:
    unknown = [f"{r['method']} {r['path']}" for r in api.requests if r["status"] != 200]
    assert not unknown, f"requests the double answered with an error: {unknown}"


SUBMIT_PARAMS = ("input_uri=s3://streamguard/data/devign.jsonl profile=production seeds=[42,7] require_gpu=true "
                 "data_version=etag:0123abcd "
                 "'overrides={\"train\": {\"epochs\": 3}, \"data\": {\"max_bad_share\": 0.01}}'")


def test_submit_uploads_a_new_version_and_runs_it(kfp_api, tmp_path):
    package = PACKAGE.read_bytes()
    ok(make("submit", kfp_api, tmp_path, PROFILE="gke-a100", KFP_VERSION_NAME="v-test-1", RUN_NAME="run-test-1",
            PARAMS=SUBMIT_PARAMS))

    # first submit: the pipeline does not exist yet -> created, then the new version uploaded
    (lookup, *_) = kfp_api.sent("GET", "/pipelines")
    assert json.loads(lookup["query"]["filter"][0])["predicates"][0]["stringValue"] == "streamguard-training"
    (create,) = kfp_api.sent("POST", "/pipelines/upload")
    assert create["query"]["name"] == ["streamguard-training"]
    assert kfp_api.multipart(create)["uploadfile"] == package
    (upload,) = kfp_api.sent("POST", "/pipelines/upload_version")
    assert upload["query"]["name"] == ["v-test-1"]
    (pipeline_id,) = kfp_api.pipelines
    assert upload["query"]["pipelineid"] == [pipeline_id]
    uploaded = kfp_api.multipart(upload)["uploadfile"]
    assert uploaded == package  # the compiled gke-a100 YAML, byte for byte
    spec, platform = yaml.safe_load_all(uploaded)
    assert spec["pipelineInfo"]["name"] == "streamguard-training"
    assert "cloud.google.com/gke-accelerator" in json.dumps(platform)

    # the run: in experiment "streamguard", of exactly that version, with typed parameters
    (exp,) = kfp_api.sent("POST", "/experiments")
    assert json.loads(exp["body"])["display_name"] == "streamguard"
    (run_req,) = kfp_api.sent("POST", "/runs")
    run = json.loads(run_req["body"])
    version = next(v for v in kfp_api.versions.values() if v["display_name"] == "v-test-1")
    assert run["display_name"] == "run-test-1"
    assert run["experiment_id"] == next(iter(kfp_api.experiments))
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline_id,
                                                 "pipeline_version_id": version["pipeline_version_id"]}
    assert "pipeline_spec" not in run  # runs the uploaded version, not an inline copy
    assert run["runtime_config"]["parameters"] == {
        "input_uri": "s3://streamguard/data/devign.jsonl", "profile": "production", "seeds": [42, 7],
        "require_gpu": True, "overrides": {"train": {"epochs": 3}, "data": {"max_bad_share": 0.01}},
        "data_version": "etag:0123abcd"}  # given: used as is
    no_unknown_endpoints(kfp_api)

    # second submit: the pipeline exists -> only a new version, and a second run of it
    ok(make("submit", kfp_api, tmp_path, PROFILE="gke-a100", KFP_VERSION_NAME="v-test-2", RUN_NAME="run-test-2",
            PARAMS="input_uri=s3://streamguard/data/devign.jsonl data_version="))
    assert len(kfp_api.sent("POST", "/pipelines/upload")) == 1
    assert [r["query"]["name"] for r in kfp_api.sent("POST", "/pipelines/upload_version")] == [["v-test-1"],
                                                                                               ["v-test-2"]]
    run2 = json.loads(kfp_api.sent("POST", "/runs")[1]["body"])
    v2 = next(v for v in kfp_api.versions.values() if v["display_name"] == "v-test-2")
    assert run2["pipeline_version_reference"]["pipeline_version_id"] == v2["pipeline_version_id"]
    # data_version given empty: not filled here; the run's source_version step reads it in the cluster
    assert run2["runtime_config"]["parameters"] == {"input_uri": "s3://streamguard/data/devign.jsonl",
                                                    "data_version": ""}

    # make runs lists runs and recurring runs
    out = ok(make("runs", kfp_api, tmp_path)).stdout
    assert "run-test-1" in out and "run-test-2" in out
    assert kfp_api.sent("GET", "/runs") and kfp_api.sent("GET", "/recurringruns")


def test_submit_fills_data_version_from_a_local_file(kfp_api, tmp_path):
    from streamguard.data.version import data_version

    data = tmp_path / "devign.jsonl"
    data.write_text('{"id": 1, "func": "int f(void) { return 0; }", "target": 0}\n')
    ok(make("submit", kfp_api, tmp_path, PROFILE="gke-a100", PARAMS=f"input_uri={data}"))
    params = json.loads(kfp_api.sent("POST", "/runs")[0]["body"])["runtime_config"]["parameters"]
    assert params == {"input_uri": str(data), "data_version": data_version(str(data))}
    assert params["data_version"].startswith("stat:")
    data.write_text('{"id": 2, "func": "int g(void) { return 1; }", "target": 1}\n')  # the data changes
    ok(make("submit", kfp_api, tmp_path, PROFILE="gke-a100", PARAMS=f"input_uri={data}"))
    second = json.loads(kfp_api.sent("POST", "/runs")[1]["body"])["runtime_config"]["parameters"]
    assert second["data_version"] == data_version(str(data)) != params["data_version"]  # new cache key


def test_submit_fills_data_version_from_an_s3_etag(kfp_api, tmp_path, s3_store):
    s3_store.put_bytes("data/devign.jsonl", b'{"id": 1}\n')
    uri = f"s3://{s3_store.bucket}/{s3_store.prefix}/data/devign.jsonl"
    etag = s3_store.client.stat_object(s3_store.bucket, f"{s3_store.prefix}/data/devign.jsonl").etag
    ok(make("submit", kfp_api, tmp_path, PROFILE="gke-a100", PARAMS=f"input_uri={uri}"))
    params = json.loads(kfp_api.sent("POST", "/runs")[0]["body"])["runtime_config"]["parameters"]
    assert params == {"input_uri": uri, "data_version": f"etag:{etag}"}


SCHEDULE_PARAMS = ("input_uri=s3://streamguard/data/primevul.jsonl profile=production seeds=[1,2] require_gpu=true "
                   "'overrides={\"train\": {\"epochs\": 3}}'")


def test_schedule_creates_an_enabled_recurring_run_with_typed_parameters(kfp_api, tmp_path):
    ok(make("schedule", kfp_api, tmp_path, PROFILE="generic-a100", KFP_VERSION_NAME="v-nightly",
            SCHEDULE="0 30 1 * * 1-5", SCHEDULE_NAME="nightly-test", SCHEDULE_PARAMS=SCHEDULE_PARAMS))
    (upload,) = kfp_api.sent("POST", "/pipelines/upload_version")
    assert kfp_api.multipart(upload)["uploadfile"] == (
        REPO / "pipelines" / "compiled" / "streamguard_training.generic-a100.yaml").read_bytes()
    (req,) = kfp_api.sent("POST", "/recurringruns")
    rr = json.loads(req["body"])
    cron = rr["trigger"]["cron_schedule"]["cron"]
    assert cron == "0 30 1 * * 1-5" and len(cron.split()) == 6
    assert "periodic_schedule" not in rr["trigger"]
    assert rr["mode"] == "ENABLE"
    assert int(rr["max_concurrency"]) == 1
    assert rr["no_catchup"] is True
    assert rr["display_name"] == "nightly-test"
    version = next(v for v in kfp_api.versions.values() if v["display_name"] == "v-nightly")
    assert rr["pipeline_version_reference"] == {"pipeline_id": version["pipeline_id"],
                                                "pipeline_version_id": version["pipeline_version_id"]}
    assert rr["experiment_id"] == next(e for e in kfp_api.experiments.values()
                                       if e["display_name"] == "streamguard")["experiment_id"]
    params = rr["runtime_config"]["parameters"]
    # typed as the compiled pipeline declares them (the string-only CLI would send "[1,2]" and "true")
    assert params == {"input_uri": "s3://streamguard/data/primevul.jsonl", "profile": "production",
                      "seeds": [1, 2], "require_gpu": True, "overrides": {"train": {"epochs": 3}}}
    assert isinstance(params["seeds"], list) and params["require_gpu"] is True
    # no data_version pinned: every scheduled run's source_version step reads the data as it is that night
    assert "data_version" not in params
    no_unknown_endpoints(kfp_api)


def test_schedule_keeps_a_string_parameter_a_string(kfp_api, tmp_path):
    ok(make("schedule", kfp_api, tmp_path, PROFILE="gke-a100",
            SCHEDULE_PARAMS="input_uri=s3://b/x.jsonl data_version=20260101 store_uri=true"))
    rr = json.loads(kfp_api.sent("POST", "/recurringruns")[0]["body"])
    assert rr["runtime_config"]["parameters"] == {"input_uri": "s3://b/x.jsonl", "data_version": "20260101",
                                                  "store_uri": "true"}
    assert rr["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"  # the default: every day at 02:00:00
    assert rr["mode"] == "ENABLE" and int(rr["max_concurrency"]) == 1 and rr["no_catchup"] is True


@pytest.mark.parametrize("variables, message", [
    (dict(SCHEDULE="0 2 * * *", SCHEDULE_PARAMS="input_uri=s3://b/x"), "needs 6 fields"),
    (dict(SCHEDULE_PARAMS="input_uri=s3://b/x seeds=1,2"), "'seeds' (LIST): '1,2' is not a JSON list"),
    (dict(SCHEDULE_PARAMS="input_uri=s3://b/x require_gpu=yes"),
     "'require_gpu' (BOOLEAN): 'yes' is not a JSON true/false"),
    (dict(SCHEDULE_PARAMS="profile=demo"), "'input_uri': required"),
    (dict(SCHEDULE_PARAMS="input_uri=s3://b/x epochs=3"), "'epochs': the pipeline has no such input"),
])
def test_schedule_refuses_bad_input_before_sending_anything(kfp_api, tmp_path, variables, message):
    proc = make("schedule", kfp_api, tmp_path, PROFILE="gke-a100", **variables)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not [r for r in kfp_api.requests if r["method"] == "POST"]


def test_submit_refuses_without_endpoint_or_with_the_local_profile(tmp_path):
    proc = make("submit", None, tmp_path, PROFILE="gke-a100", KFP_ENDPOINT="", PARAMS="input_uri=x")
    assert proc.returncode == 2 and "set KFP_ENDPOINT" in proc.stderr
    proc = make("submit", None, tmp_path, PROFILE="local", KFP_ENDPOINT="http://127.0.0.1:9", PARAMS="input_uri=x")
    assert proc.returncode == 2 and "PROFILE=local has no cluster settings" in proc.stderr


def test_compiled_package_path_follows_the_profile():
    out = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-n", "submit", "PROFILE=generic-a100",
                          "KFP_ENDPOINT=http://127.0.0.1:9", "PARAMS=input_uri=x"],
                         capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"pipeline create-version .*pipelines/compiled/streamguard_training\.generic-a100\.yaml", out)


def _documented_run_create(path: Path) -> str:
    """The `make compile PROFILE=gke-a100 && kfp ... run create ...` command of a doc, its `kfp` part."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("make compile PROFILE=gke-a100 && kfp "))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command).removeprefix("make compile PROFILE=gke-a100 && ")


@pytest.mark.parametrize("doc", ["README.md", "docs/kubeflow.md"])
def test_the_documented_kfp_run_create_command_works(kfp_api, tmp_path, doc):
    """The walk-through's command, verbatim (the compile step is what make compile already committed)."""
    command = _documented_run_create(REPO / doc)
    assert " run create --experiment-name streamguard " in command and "--package-file " in command
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", HOME=str(tmp_path),
               KFP_ENDPOINT=kfp_api.endpoint, NO_PROXY="127.0.0.1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_req,) = kfp_api.sent("POST", "/runs")
    run = json.loads(run_req["body"])
    # the compiled gke-a100 file, inline, with its Kubernetes platform spec
    inline = run["pipeline_spec"]
    assert inline["pipeline_spec"]["pipelineInfo"]["name"] == "streamguard-training"
    assert "cloud.google.com/gke-accelerator" in json.dumps(inline["platform_spec"])
    params = run["runtime_config"]["parameters"]
    assert params["input_uri"] == "s3://streamguard/data/devign.jsonl" and params["profile"] == "production"
    no_unknown_endpoints(kfp_api)
