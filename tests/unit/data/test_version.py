"""streamguard.data.version: the dataset's version changes when the data behind the same URI changes (path, s3://,
http), so KFP's cache key of ingest changes with it; and the pipeline's source_version step uses it."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.source_version import source_version
from streamguard.data.version import data_version
from streamguard.errors import UserError


def test_a_file_changes_version_when_rewritten(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": 1}\n')
    v1 = data_version(str(f))
    assert v1.startswith("stat:") and data_version(f"file://{f}") == v1 == data_version(str(f))
    f.write_text('{"id": 2}\n')
    os.utime(f, ns=(1, 10**18))  # same size, other mtime: another version
    assert data_version(str(f)) != v1


def test_a_directory_changes_version_when_a_file_changes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("x\n")
    v1 = data_version(str(tmp_path / "d"))
    assert v1.startswith("tree:")
    (tmp_path / "d" / "b.jsonl").write_text("y\n")
    assert data_version(str(tmp_path / "d")) != v1


def test_a_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        data_version(str(tmp_path / "nope.jsonl"))


def test_s3_object_and_prefix(s3_store):
    uri = f"s3://{s3_store.bucket}/{s3_store.prefix}"
    s3_store.put_bytes("data/devign.jsonl", b'{"id": 1}\n')
    v1 = data_version(f"{uri}/data/devign.jsonl")
    assert v1.startswith("etag:")
    s3_store.put_bytes("data/devign.jsonl", b'{"id": 2}\n')  # replaced at the same key
    assert data_version(f"{uri}/data/devign.jsonl") not in (v1, "")
    p1 = data_version(f"{uri}/data")  # a prefix: every object under it
    assert p1.startswith("etags:")
    s3_store.put_bytes("data/more.jsonl", b"{}\n")
    assert data_version(f"{uri}/data") != p1
    with pytest.raises(UserError, match="no such object or prefix"):
        data_version(f"{uri}/nothing-here")


class _Server:
    def __init__(self, headers: dict[str, str]):
        self.headers = headers
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.send_response(200)
                for k, v in outer.headers.items():
                    self.send_header(k, v)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/devign.jsonl"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("headers, expected", [
    ({"ETag": '"abc123"'}, "etag:abc123"),
    ({"Last-Modified": "Tue, 01 Dec 2026 02:00:00 GMT", "Content-Length": "42"},
     "http:42-Tue, 01 Dec 2026 02:00:00 GMT"),
])
def test_http_uses_the_servers_etag_or_size_and_date(headers, expected, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    srv = _Server(headers)
    try:
        assert data_version(srv.url) == expected
    finally:
        srv.close()


def test_http_without_any_hint_is_never_the_same(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    srv = _Server({"Content-Type": "text/plain"})
    try:
        a, b = data_version(srv.url), data_version(srv.url)
        assert a.startswith("unknown:") and a != b  # ingested again rather than served stale
    finally:
        srv.close()


def test_the_pipeline_step_prefers_a_given_version(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("{}\n")
    assert source_version.python_func(input_uri=str(f), data_version="etag:given") == "etag:given"
    assert source_version.python_func(input_uri=str(f), data_version="") == data_version(str(f))
    with pytest.raises(SystemExit) as e:  # one line and exit 2, as every stage
        source_version.python_func(input_uri=str(tmp_path / "missing"), data_version="")
    assert e.value.code == 2
