"""Training against a real S3 server (moto on 127.0.0.1) behind a proxy that the test takes down.

* an outage shorter than ``store.retry_budget_s`` in the middle of training: exit 0, metrics.json
  byte-identical to an uninterrupted run;
* an outage longer than the budget: exit 5, one line, no traceback, the last checkpoint intact,
  and a restart that resumes from it and ends where the uninterrupted run ends;
* a permanent error (an S3 double answering AccessDenied): exit 2 at once, one line naming
  endpoint, bucket, key and the S3 error code.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid

import pytest
import torch
from s3_faults import DenyingS3, FlakyProxy

from streamguard.cli import main
from streamguard.errors import EXIT_BAD_INPUT, EXIT_STORE_UNAVAILABLE

SETS = ["--profile", "test", "--set", "train.num_threads=1"]


def _train_args(data, graphs, out, store: str, *sets: str) -> list[str]:
    args = ["train-gnn", "--data", str(data), "--graphs", str(graphs), "--seed", "0", "--model-dir",
            str(out / "model"), "--result-dir", str(out / "result"), "--store", store, *SETS]
    for s in sets:
        args += ["--set", s]
    return args


def _env(endpoint: str) -> dict[str, str]:
    env = dict(os.environ, MINIO_ENDPOINT=endpoint, MINIO_ACCESS_KEY="testing-access",
               MINIO_SECRET_KEY="testing-secret", MINIO_SECURE="false")
    env.pop("STORE_RETRY_BUDGET_S", None)
    return env


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run (in-process, local store): its metrics.json bytes."""
    data, graphs, _ = tiny_data
    out = tmp_path_factory.mktemp("outage-ref")
    assert main(_train_args(data, graphs, out, str(out / "store"))) == 0
    return (out / "result" / "metrics.json").read_bytes()


@pytest.fixture
def proxied(s3_env, monkeypatch):
    """A fresh bucket on the moto server and a proxy in front of it: (proxy, bucket, direct store)."""
    from streamguard.storage import open_store

    bucket = f"sg-outage-{uuid.uuid4().hex[:8]}"
    direct = open_store(f"s3://{bucket}/run")
    direct.ensure_bucket()
    proxy = FlakyProxy(s3_env)
    yield proxy, bucket, direct
    proxy.close()


def _checkpoint(direct) -> dict:
    keys = [k for k in direct.list("checkpoints/") if k.endswith("/last.pt")]
    assert len(keys) == 1, keys
    return torch.load(io.BytesIO(direct.get_bytes(keys[0])), map_location="cpu", weights_only=False)


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("streamguard: error:")]


def test_outage_shorter_than_the_budget_mid_training_is_ridden_out(tiny_data, reference, proxied, tmp_path):
    data, graphs, _ = tiny_data
    proxy, bucket, direct = proxied
    # down for 3 s from the second checkpoint upload (end of epoch 0) on; the budget is 20 s
    proxy.arm(b"PUT", b"/checkpoints/", nth=2, seconds=3.0)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamguard",
                           *_train_args(data, graphs, tmp_path, f"s3://{bucket}/run", "store.retry_budget_s=20")],
                          env=_env(proxy.endpoint), capture_output=True, text=True, timeout=240)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not _error_lines(proc.stderr)
    assert len(proxy.outages) == 1 and proxy.refused >= 1
    retries = [line for line in proc.stderr.splitlines() if "WARNING" in line and "put failed" in line]
    assert retries and all(f"bucket '{bucket}'" in r and "/checkpoints/" in r and "retry" in r for r in retries)
    lines = proc.stderr.splitlines()
    first_retry = next(i for i, line in enumerate(lines) if "put failed" in line)
    epoch1 = next(i for i, line in enumerate(lines) if "gnn seed 0 epoch 1:" in line)
    assert first_retry < epoch1, "training did not go on while the store was down"
    assert (tmp_path / "result" / "metrics.json").read_bytes() == reference
    final = _checkpoint(direct)
    assert final["done"] and final["epoch"] == 2
    print(f"outage 3.0 s, budget 20 s: exit 0 in {took:.1f} s, {len(retries)} retries logged")


def test_outage_longer_than_the_budget_exits_5_and_the_restart_resumes(tiny_data, reference, proxied, tmp_path,
                                                                       caplog, monkeypatch):
    data, graphs, _ = tiny_data
    proxy, bucket, direct = proxied
    proxy.arm(b"PUT", b"/checkpoints/", nth=2, seconds=600.0)  # down until the test ends it
    args = _train_args(data, graphs, tmp_path, f"s3://{bucket}/run", "store.retry_budget_s=2")
    proc = subprocess.run([sys.executable, "-m", "streamguard", *args], env=_env(proxy.endpoint),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == EXIT_STORE_UNAVAILABLE == 5, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "object store unavailable" in errors[0] and proxy.endpoint in errors[0]
    assert "resumes from the last one written" in errors[0]
    assert "not written, training goes on" in proc.stderr  # the background write was skipped first
    assert not (tmp_path / "result" / "metrics.json").exists()

    proxy.end_outage()
    last = _checkpoint(direct)  # intact: it loads, and it is the one written before the outage
    assert (last["epoch"], last["step"], last["done"]) == (0, 5, False)

    caplog.set_level("INFO")
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    assert main(args) == 0
    assert any("resuming from checkpoint" in r.getMessage() and "step 5" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "result" / "metrics.json").read_bytes() == reference


def test_access_denied_is_exit_2_at_once_with_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    data, graphs, _ = tiny_data
    double = DenyingS3()
    try:
        monkeypatch.setenv("MINIO_ENDPOINT", double.endpoint)
        monkeypatch.setenv("MINIO_ACCESS_KEY", "wrong")
        monkeypatch.setenv("MINIO_SECRET_KEY", "wrong")
        t0 = time.monotonic()
        code = main(_train_args(data, graphs, tmp_path, "s3://sg-denied/run", "store.retry_budget_s=60"))
        took = time.monotonic() - t0
    finally:
        double.close()
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT == 2 and "Traceback" not in err
    errors = _error_lines(err)
    assert len(errors) == 1, err
    line = errors[0]
    assert double.endpoint in line and "bucket 'sg-denied'" in line and "key 'run/checkpoints/" in line
    assert "AccessDenied" in line and "retry" not in err
    assert len(double.requests) == 1 and took < 30  # no retries: one request, not a 60 s budget


# ------------------------------------------------------------------ the other stages: ingest, graph shards, LR cache
def _through(proxy, bucket: str, budget: float, monkeypatch):
    from streamguard.config import StoreConfig
    from streamguard.storage import open_store

    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    return open_store(f"s3://{bucket}/run", StoreConfig(retry_budget_s=budget))


def test_graph_shard_upload_rides_out_an_outage(tiny_data, proxied, tmp_path, monkeypatch):
    from streamguard.graphs import build_graphs

    data, _, _ = tiny_data
    proxy, bucket, direct = proxied
    store = _through(proxy, bucket, 20, monkeypatch)
    proxy.arm(b"PUT", b"/graphs/", nth=1, seconds=1.5)  # the first shard upload is cut off
    report = build_graphs(data, tmp_path / "g1", store=store, workers=1)
    assert not report["cache_hit"] and len(proxy.outages) == 1
    assert any(k.endswith("manifest.json") for k in direct.list("graphs/"))  # uploaded last: the entry is complete
    assert build_graphs(data, tmp_path / "g2", store=store, workers=1)["cache_hit"]


def test_ingest_from_s3_rides_out_a_short_outage_and_exits_5_past_the_budget(proxied, tmp_path, monkeypatch, capsys):
    from streamguard.data.synthetic import write_demo_dataset

    proxy, bucket, direct = proxied
    write_demo_dataset(tmp_path / "raw.jsonl", n=60, seed=1)
    direct.put_file("raw.jsonl", tmp_path / "raw.jsonl")
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    args = ["ingest", "--input", f"s3://{bucket}/run/raw.jsonl", "--profile", "test"]
    proxy.outage(1.5)
    assert main([*args, "--output", str(tmp_path / "ok"), "--set", "store.retry_budget_s=20"]) == 0
    proxy.outage(600)
    code = main([*args, "--output", str(tmp_path / "down"), "--set", "store.retry_budget_s=1"])
    err = capsys.readouterr().err
    assert code == EXIT_STORE_UNAVAILABLE and "Traceback" not in err
    errors = _error_lines(err)
    assert len(errors) == 1 and "object store unavailable" in errors[0] and "raw.jsonl" in errors[0]


def test_lr_cache_read_rides_out_an_outage_and_past_the_budget_is_not_a_silent_miss(proxied, monkeypatch):
    from streamguard.errors import StoreUnavailableError
    from streamguard.train.lr_cache import LRCache

    proxy, bucket, _ = proxied
    cache = LRCache(_through(proxy, bucket, 20, monkeypatch))
    cache.put("k" * 64, 3e-4, key_parts={})
    proxy.outage(1.0)
    assert cache.get("k" * 64)["lr"] == 3e-4 and cache.last_status == "hit"
    cache = LRCache(_through(proxy, bucket, 0.5, monkeypatch))
    proxy.outage(600)
    with pytest.raises(StoreUnavailableError):
        cache.get("k" * 64)
