"""Shared fixtures: object stores on both backends, a real S3 server on 127.0.0.1."""

from __future__ import annotations

import socket
import uuid

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session; yields its endpoint (host:port)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    monkeypatch.setenv("MINIO_ENDPOINT", s3_server)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "testing-access")
    monkeypatch.setenv("MINIO_SECRET_KEY", "testing-secret")
    monkeypatch.setenv("MINIO_SECURE", "false")
    return s3_server


@pytest.fixture
def s3_store(s3_env):
    """A fresh bucket on the test S3 server, as a StreamGuard store."""
    from streamguard.storage import open_store

    bucket = f"sg-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/prefix")
    store.ensure_bucket()
    return store


@pytest.fixture
def local_store(tmp_path):
    from streamguard.storage import open_store

    return open_store(str(tmp_path / "store"))


@pytest.fixture(params=["local", "s3"])
def store(request):
    """The same test against both backends."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny models: one intra-op thread is several times faster for them and leaves the
    other core to the process under test (subprocesses are not affected)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """~120 synthetic functions, ingested, with graphs (`test` profile): ``(data_dir, graphs_dir, cfg)``.
    Shared by the session: read it, never write it (copy it first)."""
    from streamguard.config import load_config
    from streamguard.data.ingest import ingest
    from streamguard.data.synthetic import write_demo_dataset
    from streamguard.graphs import build_graphs

    root = tmp_path_factory.mktemp("tiny-data")
    cfg = load_config("test")
    write_demo_dataset(root / "raw.jsonl", n=120, seed=3)
    ingest(str(root / "raw.jsonl"), str(root / "data"), cfg.data)
    build_graphs(root / "data", root / "graphs", workers=1)
    return root / "data", root / "graphs", cfg


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One seed's transformer, GNN and fusion trained (`test` profile) on 240 synthetic functions, and their
    bundle: ``SimpleNamespace(data, graphs, models={family: dir}, results={family: dir}, bundle, cfg)``.
    Shared by the session (~30 s once): read it, never write it."""
    from types import SimpleNamespace

    from streamguard import families, training
    from streamguard.bundle import write_bundle
    from streamguard.config import load_config
    from streamguard.data.ingest import ingest
    from streamguard.data.synthetic import write_demo_dataset
    from streamguard.graphs import build_graphs

    root = tmp_path_factory.mktemp("trained")
    cfg = load_config("test")
    write_demo_dataset(root / "raw.jsonl", n=240, seed=3)
    ingest(str(root / "raw.jsonl"), str(root / "data"), cfg.data)
    build_graphs(root / "data", root / "graphs", workers=1)
    models, results = {}, {}
    for name in families.names():
        fam = families.get(name)
        inputs = {"data": root / "data", "graphs": root / "graphs", **models}
        models[name], results[name] = root / "models" / name, root / "results" / name
        training.train(name, {k: inputs[k] for k in ["data", *(i.name for i in fam.inputs)]}, models[name],
                       results[name], seed=42, cfg=cfg)
    write_bundle(root / "bundle", models, data_dir=root / "data")
    return SimpleNamespace(data=root / "data", graphs=root / "graphs", models=models, results=results,
                           bundle=root / "bundle", cfg=cfg)
