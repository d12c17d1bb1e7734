"""LR cache against both store backends, and the LR resolution policy."""

from __future__ import annotations

import json
import logging

import pytest

from streamguard.config import OptimConfig, TrainConfig
from streamguard.storage import get_json
from streamguard.train.lr_cache import LRCache, lr_cache_key, resolve_lr
from streamguard.train.lr_finder import LRFinderResult


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Finder:
    """Counts calls; returns a canned result."""

    def __init__(self, lr=3e-4, source="finder", reason=None):
        self.calls = 0
        self.result = LRFinderResult(lr, source, reason, [1e-7, 1e-6], [0.7, 0.6], suggested=lr)

    def __call__(self):
        self.calls += 1
        return self.result


PARTS = {"family": "gnn", "data_fingerprint": "abc123", "model": {"hidden": 128, "layers": 3},
         "batch_size": 16, "max_length": 512}


def test_key_is_canonical_and_sensitive():
    a = lr_cache_key(data="x", model={"a": 1, "b": 2}, batch_size=16)
    b = lr_cache_key(batch_size=16, model={"b": 2, "a": 1}, data="x")
    assert a == b and len(a) == 64
    assert a != lr_cache_key(data="x", model={"a": 1, "b": 2}, batch_size=32)
    assert a != lr_cache_key(data="y", model={"a": 1, "b": 2}, batch_size=16)


def test_hit_on_second_run_and_miss_after_ttl(store, caplog):
    clock = Clock()
    cache = LRCache(store, ttl_hours=168.0, clock=clock)
    opt, tc = OptimConfig(), TrainConfig()
    finder = Finder(3e-4)
    with caplog.at_level(logging.INFO, logger="streamguard.train.lr_cache"):
        first = resolve_lr(opt, tc, cache, PARTS, finder)
    assert first["lr_source"] == "finder" and first["lr"] == 3e-4 and first["cache"] == "miss"
    assert first["cache_written"] is True and finder.calls == 1
    entry = get_json(store, f"lr_cache/{first['cache_key']}.json")
    assert entry["lr"] == 3e-4 and entry["ttl_hours"] == 168.0 and entry["created_at"] == clock.t
    assert entry["key_parts"]["data_fingerprint"] == "abc123" and entry["source"] == "finder"

    clock.t += 167 * 3600
    second = resolve_lr(opt, tc, cache, PARTS, finder)
    assert second["lr_source"] == "cache" and second["lr"] == 3e-4 and second["cache"] == "hit"
    assert second["cache_key"] == first["cache_key"] and finder.calls == 1

    clock.t += 2 * 3600  # 169 h after writing
    finder.result.lr = 5e-4
    third = resolve_lr(opt, tc, cache, PARTS, finder)
    assert third["lr_source"] == "finder" and third["cache"] == "expired" and finder.calls == 2
    assert get_json(store, f"lr_cache/{first['cache_key']}.json")["lr"] == 5e-4  # rewritten
    assert resolve_lr(opt, tc, cache, PARTS, finder)["lr_source"] == "cache"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "miss" in messages and "stored" in messages


@pytest.mark.parametrize("payload", [
    b"{not json",
    b"",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    json.dumps({"lr": "fast", "created_at": 1_700_000_000.0}).encode(),
    json.dumps({"lr": True, "created_at": 1_700_000_000.0}).encode(),
    json.dumps({"lr": -1e-3, "created_at": 1_700_000_000.0}).encode(),
    b'{"lr": NaN, "created_at": 1700000000.0}',
    b'{"lr": Infinity, "created_at": 1700000000.0}',
    json.dumps({"lr": 1e-3}).encode(),
    json.dumps({"lr": 1e-3, "created_at": "yesterday"}).encode(),
    json.dumps({"lr": 1e-3, "created_at": 1_800_000_000.0}).encode(),  # years in the future
])
def test_corrupt_entry_is_ignored_and_replaced(local_store, payload):
    _corrupt_entry_is_ignored_and_replaced(local_store, payload)


@pytest.mark.parametrize("payload", [b"{not json", b'{"lr": NaN, "created_at": 1700000000.0}'])
def test_corrupt_entry_is_ignored_and_replaced_both_backends(store, payload):
    _corrupt_entry_is_ignored_and_replaced(store, payload)


def _corrupt_entry_is_ignored_and_replaced(store, payload):
    clock = Clock()
    cache = LRCache(store, clock=clock)
    key = lr_cache_key(**resolve_lr(OptimConfig(), TrainConfig(lr_finder=False), None, PARTS, Finder())["key_parts"])
    store.put_bytes(cache.object_key(key), payload)
    assert cache.get(key) is None and cache.last_status == "corrupt"
    finder = Finder(7e-4)
    rec = resolve_lr(OptimConfig(), TrainConfig(), cache, PARTS, finder)
    assert rec["cache_key"] == key and rec["cache"] == "corrupt" and rec["lr_source"] == "finder"
    assert finder.calls == 1
    assert get_json(store, cache.object_key(key))["lr"] == 7e-4
    assert cache.get(key)["lr"] == 7e-4 and cache.last_status == "hit"


def test_put_overwrites_and_rejects_bad_lr(store):
    cache = LRCache(store, clock=Clock(), prefix="custom/prefix")
    cache.put("k", 1e-3, key_parts={"a": 1})
    cache.put("k", 2e-3, key_parts={"a": 1})
    assert cache.get("k")["lr"] == 2e-3
    assert any(k.endswith("custom/prefix/k.json") or k == "custom/prefix/k.json" for k in store.list("custom"))
    with pytest.raises(ValueError):
        cache.put("k", float("nan"))


def test_fixed_lr_wins_and_finder_is_not_run(local_store):
    finder = Finder()
    rec = resolve_lr(OptimConfig(lr=1e-4), TrainConfig(), LRCache(local_store), PARTS, finder)
    assert rec["lr"] == 1e-4 and rec["lr_source"] == "fixed" and finder.calls == 0 and rec["cache"] == "not_used"


def test_finder_fallback_is_recorded_and_not_cached(local_store):
    cache = LRCache(local_store, clock=Clock())
    finder = Finder(1e-3, source="fallback", reason="ValueError: the batch source yielded no batches")
    rec = resolve_lr(OptimConfig(fallback_lr=1e-3), TrainConfig(), cache, PARTS, finder)
    assert rec["lr_source"] == "fallback" and "no batches" in rec["reason"]
    assert not local_store.exists(cache.object_key(rec["cache_key"]))
    assert "cache_written" not in rec
    json.dumps(rec, allow_nan=False)


def test_finder_disabled_gives_fallback_and_no_store_means_no_cache():
    finder = Finder()
    rec = resolve_lr(OptimConfig(fallback_lr=2e-5), TrainConfig(lr_finder=False), None, PARTS, finder)
    assert rec == {**rec, "lr": 2e-5, "lr_source": "fallback", "cache": "disabled"} and finder.calls == 0
    rec = resolve_lr(OptimConfig(), TrainConfig(), None, PARTS, finder)
    assert rec["lr_source"] == "finder" and finder.calls == 1


def test_key_covers_lr_range_and_finder_steps():
    a = resolve_lr(OptimConfig(lr=1.0), TrainConfig(), None, PARTS, Finder())["cache_key"]
    b = resolve_lr(OptimConfig(lr=1.0, lr_max=1e-1), TrainConfig(), None, PARTS, Finder())["cache_key"]
    c = resolve_lr(OptimConfig(lr=1.0), TrainConfig(lr_finder_steps=300), None, PARTS, Finder())["cache_key"]
    assert len({a, b, c}) == 3


class BrokenStore:
    uri = "broken://"

    def get_bytes(self, key):
        raise ConnectionError("connection refused")

    def put_bytes(self, key, data):
        raise ConnectionError("connection refused")


def test_unreachable_store_never_fails_the_run():
    cache = LRCache(BrokenStore(), clock=Clock())
    rec = resolve_lr(OptimConfig(), TrainConfig(), cache, PARTS, Finder(4e-4))
    assert rec["lr"] == 4e-4 and rec["lr_source"] == "finder" and rec["cache"] == "error"
    assert rec["cache_written"] is False
