"""Several nodes: a training step with `nodes: 2` creates a Kubeflow Trainer TrainJob, follows it and brings its
outputs back, against a stand-in for the Kubernetes API and the Trainer (k8s_trainer_double.py) and a real S3
server (moto). The double runs the TrainJob's nodes as local processes with the torch plugin's PET_* variables,
so the success case is the whole chain: staging, the node command, torchrun's static rendezvous across two
"nodes" (node 0's agent waits for node 1 before any worker starts), the real `streamguard train-gnn`, node 0's
upload, the step's copy into its artifacts."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from k8s_trainer_double import TrainerDouble

from pipelines.platform import PROFILES_DIR, load_profile, trainjob_template
from streamguard.errors import EXIT_DISTRIBUTED, DistributedError, UserError
from streamguard.launch import launched
from streamguard.launch.trainjob import TEMPLATE_ENV, trainjob_body, trainjob_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "launch"))
from trainer_crd import problems  # noqa: E402

NAMESPACE = "streamguard-test"
RUN_KEY = "run-1"
TWO_NODES = (PROFILES_DIR / "gke-a100.yaml").read_text().replace(
    "accelerator_count: 1\n", "accelerator_count: 1\n    nodes: 2\n")


def template(tmp_path: Path, allow_cpu: bool = True):
    text = TWO_NODES.replace("allow_cpu_training: false", f"allow_cpu_training: {str(allow_cpu).lower()}")
    (tmp_path / "gke-a100.yaml").write_text(text)
    return dataclasses.replace(trainjob_template(load_profile(tmp_path / "gke-a100.yaml")), poll_seconds=0.2)


@pytest.fixture
def cluster(tmp_path, s3_env, s3_store, monkeypatch):
    """The double, the follower's environment pointing at it, and the Secret/ConfigMap the pods read."""
    double = TrainerDouble(
        root=tmp_path / "nodes",
        secrets={"streamguard-minio": {"MINIO_ACCESS_KEY": "testing-access", "MINIO_SECRET_KEY": "testing-secret"}},
        config_maps={"streamguard-config": {"MINIO_ENDPOINT": s3_env, "MINIO_SECURE": "false",
                                            "STREAMGUARD_STORE": s3_store.uri, "LR_CACHE_TTL_HOURS": "168",
                                            "STORE_RETRY_BUDGET_S": "20"}}).start()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(double.kubeconfig(tmp_path / "kubeconfig", NAMESPACE)))
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    yield double, s3_store
    double.stop()


def step_dirs(tmp_path: Path, tiny_data) -> dict[str, Path]:
    data, graphs, _ = tiny_data
    out = {"data": tmp_path / "in" / "data", "graphs": tmp_path / "in" / "graphs",
           "model": tmp_path / "out" / "model", "result": tmp_path / "out" / "result"}
    shutil.copytree(data, out["data"])
    shutil.copytree(graphs, out["graphs"])
    return out


def never(*_a, **_k):
    raise AssertionError("the step trained in its own process")


def step(t, dirs, store_uri, overrides=None):
    """The training step as train_and_log calls it, with the task's STREAMGUARD_TRAINJOB."""
    return launched(never, "gnn", environ={TEMPLATE_ENV: t.to_json()}, seed=42, profile="test",
                    overrides=overrides if overrides is not None else {"gnn": {"epochs": 1}}, store_uri=store_uri,
                    run_key=RUN_KEY, **dirs)


def expected_command(store_uri: str, name: str) -> list[str]:
    w = "/streamguard-work"
    return ["python", "-m", "streamguard.launch", "node", "--store", store_uri, "--stage", f"trainjobs/{name}",
            "--workdir", w, "--inputs", "data,graphs", "--outputs", "model,result", "--",
            "-m", "streamguard", "train-gnn", "--data", f"{w}/data", "--graphs", f"{w}/graphs",
            "--model-dir", f"{w}/model", "--result-dir", f"{w}/result", "--seed", "42", "--run-key", RUN_KEY,
            "--profile", "test", "--overrides", '{"gnn": {"epochs": 1}}', "--store", store_uri]


def test_two_nodes_train_and_the_outputs_come_back(tmp_path, cluster, tiny_data, caplog):
    double, store = cluster
    t = template(tmp_path)
    dirs = step_dirs(tmp_path, tiny_data)
    name = trainjob_name(RUN_KEY, "gnn", 42)
    with caplog.at_level(logging.INFO, logger="streamguard.launch"):
        card = step(t, dirs, store.uri)()
    # the object created: exactly the template + this step's command, valid for the pinned CRD
    (post,) = double.calls("POST")
    assert post.path == f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NAMESPACE}/trainjobs"
    assert post.body == trainjob_body(t, name, NAMESPACE, expected_command(store.uri, name),
                                      labels={"streamguard.io/trainjob": name, "streamguard.io/family": "gnn",
                                              "streamguard.io/seed": "42"},
                                      annotations={"streamguard.io/run-key": RUN_KEY})
    assert problems(post.body) == []
    # both nodes ran the training under torchrun, in one rendezvous of 2 nodes; node 0's outputs are the step's
    for rank in (0, 1):
        assert "gnn seed 42: test F1" in double.log(name, rank), double.log(name, rank)
    assert card["family"] == "gnn" and card["seed"] == 42
    assert json.loads((dirs["result"] / "model_card.json").read_text()) == card
    assert (dirs["model"] / "model.pt").read_bytes() == (double.node_dir(name, 0) / "model" / "model.pt").read_bytes()
    assert (dirs["result"] / "predictions.jsonl").is_file()
    # the status in the step's log, then the TrainJob and its staging deleted
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"TrainJob {NAMESPACE}/{name}: jobs node: active 2" in m for m in lines), lines
    assert any(f"TrainJob {NAMESPACE}/{name}: Complete=True AllJobsCompleted: jobset completed successfully" in m
               for m in lines), lines
    (delete,) = double.calls("DELETE")
    assert delete.path.endswith(f"/trainjobs/{name}") and delete.query.get("propagationPolicy") == ["Foreground"]
    assert double.objects == {} and store.list(f"trainjobs/{name}/") == []


def test_a_node_failure_is_the_steps_exit_code_and_the_trainjob_is_kept(tmp_path, cluster, tiny_data):
    """A GPU pod without a usable GPU (the double runs it on the CPU, STREAMGUARD_REQUIRE_CUDA=1 as the profile
    sets it): the node's training exits 4, the TrainJob fails, the step fails with 4 and keeps the TrainJob.
    (One node here: the two-node path is the test above; which node's code wins is failure_exit_code's.)"""
    double, store = cluster
    name = trainjob_name(RUN_KEY, "gnn", 42)
    t = dataclasses.replace(template(tmp_path, allow_cpu=False), num_nodes=1)
    with pytest.raises(DistributedError) as e:
        step(t, step_dirs(tmp_path, tiny_data), store.uri)()
    assert e.value.exit_code == 4
    assert "node 0" in str(e.value) and "exited with 4" in str(e.value) and "Failed=True FailedJobs" in str(e.value)
    assert "STREAMGUARD_REQUIRE_CUDA=1" in double.log(name, 0)
    assert not double.calls("DELETE") and (NAMESPACE, name) in double.objects
    assert store.list(f"trainjobs/{name}/inputs/data/")  # kept beside it, for a look


def test_a_trainjob_that_never_ran_streamguard_is_exit_6(tmp_path, cluster, tiny_data):
    double, store = cluster
    double.mode, double.message = "fail", "ImagePullBackOff: back-off pulling image ghcr.io/streamguard/x"
    with pytest.raises(DistributedError) as e:
        step(template(tmp_path), step_dirs(tmp_path, tiny_data), store.uri)()
    assert e.value.exit_code == EXIT_DISTRIBUTED == 6
    assert "ImagePullBackOff" in str(e.value) and "no node recorded a failing exit code" in str(e.value)


def test_a_bad_config_or_a_local_store_fails_before_any_trainjob(tmp_path, cluster, tiny_data):
    double, store = cluster
    dirs = step_dirs(tmp_path, tiny_data)
    with pytest.raises(UserError, match="gnn.epochs"):
        step(template(tmp_path), dirs, store.uri, overrides={"gnn": {"epochs": "many"}})()
    with pytest.raises(UserError, match="only through an s3:// store"):
        step(template(tmp_path), dirs, str(tmp_path / "local-store"))()
    assert double.requests == []


def test_a_retry_follows_the_trainjob_its_first_attempt_left_running(tmp_path, cluster, tiny_data):
    """The step's pod was preempted, its TrainJob was not: the retry creates nothing and follows it to the end."""
    double, store = cluster
    t = template(tmp_path)
    dirs = step_dirs(tmp_path, tiny_data)
    name = trainjob_name(RUN_KEY, "gnn", 42)
    double.seed(NAMESPACE, name, [])
    # what node 0 leaves when it finishes (a real run's outputs, from the first attempt's own copy)
    from streamguard.launch import staging

    first = tmp_path / "first"
    (first / "model").mkdir(parents=True)
    (first / "result").mkdir()
    (first / "model" / "model.pt").write_bytes(b"weights")
    (first / "result" / "model_card.json").write_text(json.dumps({"family": "gnn", "seed": 42}))

    def finish():
        time.sleep(1.0)
        staging.upload_outputs(store, f"trainjobs/{name}", {"model": str(first / "model"),
                                                            "result": str(first / "result")})
        double.set_conditions(NAMESPACE, name, [{"type": "Complete", "status": "True", "reason": "AllJobsCompleted"}])

    import threading

    threading.Thread(target=finish, daemon=True).start()
    assert step(t, dirs, store.uri)() == {"family": "gnn", "seed": 42}
    assert not double.calls("POST") and (dirs["model"] / "model.pt").read_bytes() == b"weights"
    assert len(double.calls("DELETE")) == 1


def test_a_finished_trainjob_of_an_earlier_attempt_is_replaced(tmp_path, cluster, tiny_data):
    double, store = cluster
    double.mode = "fail"
    name = trainjob_name(RUN_KEY, "gnn", 42)
    double.seed(NAMESPACE, name, [{"type": "Failed", "status": "True", "reason": "FailedJobs"}])
    with pytest.raises(DistributedError):
        step(template(tmp_path), step_dirs(tmp_path, tiny_data), store.uri)()
    methods = [r.method for r in double.requests]
    assert methods[:3] == ["GET", "DELETE", "GET"] and methods.count("POST") == 1  # old one gone, then a new one
    assert methods.index("POST") > methods.index("DELETE")


FOLLOWER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from streamguard.launch import launched
    args = json.loads(sys.argv[1])
    dirs = {k: Path(v) for k, v in args["dirs"].items()}
    launched(None, "gnn", environ={"STREAMGUARD_TRAINJOB": args["template"]}, seed=42, profile="test", overrides={},
             store_uri=args["store"], run_key="run-1", **dirs)()
""")


def test_cancelling_the_step_deletes_its_trainjob(tmp_path, cluster, tiny_data):
    """KFP cancels a run by sending SIGTERM to the step: the follower deletes the TrainJob it follows and exits 143."""
    double, store = cluster
    double.mode = "hang"
    dirs = step_dirs(tmp_path, tiny_data)
    args = {"dirs": {k: str(v) for k, v in dirs.items()}, "template": template(tmp_path).to_json(), "store": store.uri}
    follower = subprocess.Popen([sys.executable, "-c", FOLLOWER, json.dumps(args)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (double.calls("POST") and double.requests[-1].method == "GET"):
        time.sleep(0.1)  # until it has created the TrainJob and reads its status
    assert double.calls("POST"), "the follower never created its TrainJob"
    follower.send_signal(signal.SIGTERM)
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 128 + signal.SIGTERM, out
    (delete,) = double.calls("DELETE")
    assert delete.path.endswith("/trainjobs/" + trainjob_name(RUN_KEY, "gnn", 42))
    assert double.objects == {} and "the step is cancelled; deleting TrainJob" in out


def test_no_rbac_says_what_the_service_account_needs(tmp_path, cluster, tiny_data):
    double, store = cluster
    double.handle = lambda method, path, body: (403, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                      "reason": "Forbidden", "code": 403, "message": "forbidden"})
    with pytest.raises(DistributedError, match="needs create/get/delete on trainjobs.trainer.kubeflow.org") as e:
        step(template(tmp_path), step_dirs(tmp_path, tiny_data), store.uri)()
    assert e.value.exit_code == EXIT_DISTRIBUTED


def test_the_first_failing_node_with_a_streamguard_code_wins():
    from streamguard.launch.follow import failure_exit_code

    assert failure_exit_code([{"node_rank": 0, "exit_code": 0}, {"node_rank": 1, "exit_code": 5, "host": "b"}]) == (
        5, "node 1 (b) exited with 5")
    assert failure_exit_code([{"node_rank": 0, "exit_code": 137, "host": "a"}])[0] == EXIT_DISTRIBUTED
    assert failure_exit_code([{"node_rank": 0, "exit_code": 0}])[0] == EXIT_DISTRIBUTED
    assert failure_exit_code([]) == (EXIT_DISTRIBUTED, "no node recorded a failing exit code (a pod did not start, "
                                                       "was evicted, or was killed)")
