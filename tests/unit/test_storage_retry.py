"""The object-store retry policy: which errors are transient or permanent, backoff inside the budget,
and the checkpoint writer riding out a store that is down. A fake clock makes the sleeps free."""

from __future__ import annotations

import errno
import logging
import random
import threading

import pytest
import urllib3
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3 import exceptions as u3

from streamguard.config import StoreConfig, load_config, store_settings
from streamguard.errors import EXIT_BAD_INPUT, EXIT_STORE_UNAVAILABLE, StoreUnavailableError
from streamguard.storage import ObjectNotFound, open_store
from streamguard.storage.retry import PERMANENT, TRANSIENT, RetryPolicy, StoreAccessError, classify_os, classify_s3
from streamguard.train.checkpoint import CheckpointWriter, load_checkpoint


def s3_error(code: str, status: int) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=status), code, f"{code} message", "/b/k", "req", "host", "b", "k")


@pytest.mark.parametrize("exc", [
    s3_error("SlowDown", 503), s3_error("RequestTimeout", 400), s3_error("InternalError", 500),
    s3_error("ServiceUnavailable", 503), s3_error("SomethingNew", 502),
    ServerError("server failed with HTTP status code 500", 500), ServerError("x", 502), ServerError("x", 503),
    ServerError("x", 504), InvalidResponseError(502, "text/html", "<html>Bad Gateway</html>"),
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ConnectionResetError(104, "reset by peer"),
    TimeoutError("timed out"), u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    u3.ReadTimeoutError(None, "/b/k", "Read timed out."), u3.NewConnectionError(None, "[Errno 111] refused"),
    u3.MaxRetryError(None, "/b/k", u3.NewConnectionError(None, "[Errno 111] refused")),
], ids=lambda e: getattr(e, "code", None) or type(e).__name__)
def test_transient_s3_errors(exc):
    assert classify_s3(exc)[0] == TRANSIENT


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("NoSuchBucket", 404), ("InvalidAccessKeyId", 403),
                                         ("SignatureDoesNotMatch", 403), ("InvalidBucketName", 400)])
def test_permanent_s3_errors(code, status):
    assert classify_s3(s3_error(code, status)) == (PERMANENT, code)


def test_unclassified_errors_are_not_the_stores_weather():
    for exc in (ObjectNotFound("k"), ValueError("invalid object key"), KeyError("x"), RuntimeError("bug"),
                PermissionError(errno.EACCES, "local destination not writable")):
        assert classify_s3(exc) is None
    assert classify_s3(InvalidResponseError(403, "text/html", "denied by a proxy"))[0] == PERMANENT


def test_local_filesystem_errnos():
    assert classify_os(OSError(errno.ETIMEDOUT, "nfs server not responding")) == (TRANSIENT, "ETIMEDOUT")
    assert classify_os(OSError(errno.EIO, "I/O error")) == (TRANSIENT, "EIO")
    assert classify_os(PermissionError(errno.EACCES, "denied")) == (PERMANENT, "EACCES")
    assert classify_os(OSError(errno.EROFS, "read-only")) == (PERMANENT, "EROFS")
    assert classify_os(FileNotFoundError(errno.ENOENT, "gone")) is None
    assert classify_os(ValueError("x")) is None


class FakeTime:
    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def policy(budget: float = 60.0, **kw) -> tuple[RetryPolicy, FakeTime]:
    t = FakeTime()
    return RetryPolicy(budget_s=budget, clock=t.clock, sleep=t.sleep, rng=random.Random(0), **kw), t


class Flaky:
    """Fails with ``errors`` in turn, then returns ``value``."""

    def __init__(self, *errors, value="ok"):
        self.errors, self.value, self.calls = list(errors), value, 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def test_transient_errors_are_retried_with_exponential_backoff_and_a_warning_each(caplog):
    p, t = policy(initial_s=0.5, max_sleep_s=3.0)
    fn = Flaky(*[ConnectionRefusedError(111, "Connection refused")] * 5, s3_error("SlowDown", 503))
    with caplog.at_level(logging.WARNING, logger="streamguard.storage.retry"):
        assert p.run("put", "ep bucket 'b' key 'k/last.pt'", fn, classify_s3) == "ok"
    assert fn.calls == 7 and len(t.sleeps) == 6
    for n, s in enumerate(t.sleeps, 1):  # jitter: half to all of min(cap, initial * 2^(n-1))
        assert 0.5 * min(3.0, 0.5 * 2 ** (n - 1)) <= s <= min(3.0, 0.5 * 2 ** (n - 1))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 6
    assert all("put failed" in w and "key 'k/last.pt'" in w for w in warnings)
    assert "ConnectionRefusedError" in warnings[0] and "SlowDown" in warnings[-1] and "retry 6" in warnings[-1]


def test_past_the_budget_the_store_is_unavailable_exit_5():
    p, t = policy(budget=10.0)
    fn = Flaky(*[u3.ProtocolError("Connection aborted.")] * 1000)
    with pytest.raises(StoreUnavailableError) as e:
        p.run("get", "127.0.0.1:9 bucket 'b' key 'k'", fn, classify_s3)
    assert e.value.exit_code == EXIT_STORE_UNAVAILABLE == 5
    msg = str(e.value)
    assert "\n" not in msg and "object store unavailable" in msg and "key 'k'" in msg and "retry_budget_s=10" in msg
    assert sum(t.sleeps) <= 10.0 and t.now - 1000.0 <= 10.0 and fn.calls == len(t.sleeps) + 1 > 3


def test_permanent_errors_fail_at_once_exit_2():
    p, t = policy()
    fn = Flaky(s3_error("AccessDenied", 403))
    with pytest.raises(StoreAccessError) as e:
        p.run("get", "127.0.0.1:9000 bucket 'sg' key 'run/last.pt'", fn, classify_s3)
    assert e.value.exit_code == EXIT_BAD_INPUT and fn.calls == 1 and t.sleeps == []
    assert "127.0.0.1:9000" in str(e.value) and "'sg'" in str(e.value) and "run/last.pt" in str(e.value)
    assert "AccessDenied" in str(e.value)


def test_unclassified_errors_propagate_unchanged_without_retry():
    p, t = policy()
    fn = Flaky(ObjectNotFound("k"))
    with pytest.raises(ObjectNotFound):
        p.run("get", "x", fn, classify_s3)
    assert fn.calls == 1 and t.sleeps == []


def test_retries_leave_the_global_rng_alone():
    state = random.getstate()
    p, _ = policy()
    p.run("put", "x", Flaky(*[TimeoutError()] * 4), classify_s3)
    RetryPolicy().delay(3)
    assert random.getstate() == state


def test_local_store_rides_out_network_filesystem_timeouts(tmp_path, monkeypatch):
    import streamguard.storage.local as local

    store = open_store(str(tmp_path / "store"), StoreConfig(retry_budget_s=5))
    t = FakeTime()
    store.retry.clock, store.retry.sleep = t.clock, t.sleep
    real, fails = local.write_bytes_atomic, [OSError(errno.ETIMEDOUT, "NFS timed out"), OSError(errno.EIO, "I/O")]

    def flaky_write(path, data):
        if fails:
            raise fails.pop(0)
        return real(path, data)

    monkeypatch.setattr(local, "write_bytes_atomic", flaky_write)
    store.put_bytes("a/b.bin", b"x")
    assert store.get_bytes("a/b.bin") == b"x" and len(t.sleeps) == 2
    monkeypatch.setattr(local, "write_bytes_atomic", lambda p, d: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(StoreAccessError, match="EACCES"):
        store.put_bytes("a/c.bin", b"y")
    assert len(t.sleeps) == 2


def test_store_settings_from_profile_set_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STORE_RETRY_BUDGET_S", raising=False)
    assert store_settings() == StoreConfig()
    assert load_config("test", sets=["store.retry_budget_s=7"]).store.retry_budget_s == 7.0
    monkeypatch.setenv("STORE_RETRY_BUDGET_S", "42")
    assert store_settings().retry_budget_s == 42.0 and load_config("test").store.retry_budget_s == 42.0
    assert open_store(str(tmp_path / "s")).retry.budget_s == 42.0


def test_store_settings_do_not_change_the_run_key():
    from streamguard.training import default_run_key

    a = default_run_key("fp", load_config("test"))
    assert a == default_run_key("fp", load_config("test", sets=["store.retry_budget_s=1", "store.timeout_s=2"]))
    assert a != default_run_key("fp", load_config("test", sets=["gnn.epochs=9"]))


# ------------------------------------------------------------------ checkpoint writer
class DownStore:
    """A store whose writes fail as the retry policy reports an outage past its budget, while ``down``."""

    def __init__(self):
        self.objects, self.down, self.error, self.gate = {}, False, None, threading.Event()
        self.gate.set()

    def put_bytes(self, key, data):
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        if self.down:
            raise StoreUnavailableError("object store unavailable: test: put failed 3 times in 0.1 s")
        self.objects[key] = data

    def get_bytes(self, key):
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key]


def test_checkpoint_writer_skips_a_write_the_store_refuses_and_keeps_the_previous_one(caplog):
    store = DownStore()
    w = CheckpointWriter(store, "ck/last.pt")
    w.save({"epoch": 0, "step": 5})
    w.wait()
    store.down = True
    with caplog.at_level(logging.WARNING, logger="streamguard.train.checkpoint"):
        w.save({"epoch": 0, "step": 10})  # fails in the background: no exception here ...
        w.wait()
        w.save({"epoch": 1, "step": 15})  # ... nor at the next save: training goes on
        w.wait()
    assert w.skipped == 2 and load_checkpoint(store, "ck/last.pt")["step"] == 5
    assert any("not written, training goes on" in r.getMessage() and "step 10" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(StoreUnavailableError, match="step 15.*resumes from the last one written"):
        w.close()  # the final snapshot was not written: the stage must not report success


def test_checkpoint_writer_close_succeeds_when_the_store_came_back():
    store = DownStore()
    w = CheckpointWriter(store, "k")
    store.down = True
    w.save({"epoch": 0, "step": 1})
    w.wait()
    store.down = False
    w.save({"epoch": 0, "step": 2})
    w.close()
    assert load_checkpoint(store, "k")["step"] == 2 and w.skipped == 1


def test_checkpoint_writer_never_blocks_training_and_writes_only_the_latest_snapshot():
    store = DownStore()
    store.gate.clear()  # the first write hangs (a store retrying inside its budget)
    w = CheckpointWriter(store, "k")
    for step in range(1, 6):
        w.save({"epoch": 0, "step": step})  # returns at once although a write is in flight
    assert store.objects == {}
    store.gate.set()
    w.close()
    assert load_checkpoint(store, "k")["step"] == 5


def test_checkpoint_writer_raises_a_permanent_error_on_the_training_thread():
    store = DownStore()
    store.error = StoreAccessError("object store ep bucket 'b' key 'k': put refused: AccessDenied")
    w = CheckpointWriter(store, "k")
    w.save({"epoch": 0, "step": 1})
    with pytest.raises(StoreAccessError, match="AccessDenied"):
        w.wait()  # what the next save or close would raise
    w.close()
