import json
import os

import pytest

from streamguard.errors import UserError
from streamguard.jsonio import read_json, write_json_atomic
from streamguard.storage import ObjectNotFound, get_json, open_store, put_json


def test_roundtrip_bytes_json_list_delete(store, tmp_path):
    store.put_bytes("a/b.bin", b"\x00\x01")
    put_json(store, "a/c.json", {"x": 1})
    assert store.get_bytes("a/b.bin") == b"\x00\x01"
    assert get_json(store, "a/c.json") == {"x": 1}
    assert store.list("a/") == ["a/b.bin", "a/c.json"]
    assert store.exists("a/c.json") and not store.exists("a/zzz")
    src = tmp_path / "f.txt"
    src.write_text("hello")
    store.put_file("files/f.txt", src)
    store.get_file("files/f.txt", tmp_path / "out" / "g.txt")
    assert (tmp_path / "out" / "g.txt").read_text() == "hello"
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("a/b.bin")


def test_overwrite_json_is_whole(store):
    put_json(store, "k.json", {"v": "x" * 1000})
    put_json(store, "k.json", {"v": 2})
    assert get_json(store, "k.json") == {"v": 2}


def test_local_atomic_write_survives_crash_midway(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"ok": 1})

    def boom(*a, **k):
        raise OSError("disk died during rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(target, {"ok": 2})
    monkeypatch.undo()
    assert read_json(target) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_bad_uris_are_user_errors(monkeypatch):
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    with pytest.raises(UserError, match="MINIO_ENDPOINT"):
        open_store("s3://bucket/x")
    with pytest.raises(UserError, match="unknown scheme"):
        open_store("gs://bucket")


def test_s3_objects_really_land_in_the_bucket(s3_store):
    put_json(s3_store, "lr/key.json", {"lr": 0.1})
    raw = s3_store.client.get_object(s3_store.bucket, "prefix/lr/key.json").read()
    assert json.loads(raw) == {"lr": 0.1}


def test_json_is_strict_nan_becomes_null(tmp_path):
    import numpy as np

    write_json_atomic(tmp_path / "m.json", {"auc": float("nan"), "x": [np.float64("inf"), 1.5]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "x": [None, 1.5]}
