"""Shared fixtures: object stores on both backends, a real S3 server on 127.0.0.1."""

from __future__ import annotations

import socket
import uuid

import pytest


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
