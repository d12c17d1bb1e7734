"""The ``object_store`` check: endpoint reachable (a TCP connect first, so a dead server fails in seconds, not
after the S3 client's retries), bucket exists, write/read/list/delete probe, LR cache location listable, TTL a
positive number (and the same as the ConfigMap's ``LR_CACHE_TTL_HOURS``, else a warning)."""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from typing import Any, Mapping

from streamguard.config import Config
from streamguard.preflight.result import CheckResult, one_line, run_check
from streamguard.storage import ObjectStore


def _endpoint(store: ObjectStore) -> tuple[str, int] | None:
    ep = getattr(store, "endpoint", None)
    if not ep:
        return None
    host, _, port = ep.rpartition(":")
    if not host or not port.isdigit():
        base = getattr(getattr(store, "client", None), "_base_url", None)
        return ep, 443 if getattr(base, "is_https", False) else 80
    return host.strip("[]"), int(port)


def check_store(store: ObjectStore | None, cfg: Config, *, connect_timeout: float = 3.0,
                environ: Mapping[str, str] | None = None) -> CheckResult:
    from streamguard.train.lr_cache import LRCache

    if store is None:
        return CheckResult("object_store", "skip", "no object store configured", required=False)
    environ = os.environ if environ is None else environ
    vals: dict[str, Any] = {"uri": store.uri}
    t0 = time.perf_counter()
    ep = _endpoint(store)
    if ep is not None:  # S3: a dead endpoint fails here in seconds, not after the client's retries
        vals["endpoint"] = f"{ep[0]}:{ep[1]}"
        try:
            socket.create_connection(ep, timeout=connect_timeout).close()
        except OSError as e:
            return CheckResult("object_store", "fail",
                               f"{store.uri}: endpoint {ep[0]}:{ep[1]} unreachable ({one_line(e)})", vals)
        vals["connect_ms"] = round(1000 * (time.perf_counter() - t0), 1)
    try:
        client, bucket = getattr(store, "client", None), getattr(store, "bucket", None)
        if client is not None and bucket:
            if not client.bucket_exists(bucket):
                return CheckResult("object_store", "fail", f"{store.uri}: bucket {bucket!r} does not exist "
                                                           "(manifests/base/buckets-job.yaml creates it)", vals)
            vals["bucket"] = bucket
        elif hasattr(store, "root"):
            vals["root"] = str(store.root)
        key = f"preflight/probe-{uuid.uuid4().hex}.txt"
        payload = b"streamguard preflight probe " + uuid.uuid4().hex.encode()
        t1 = time.perf_counter()
        store.put_bytes(key, payload)
        ok_read = store.get_bytes(key) == payload
        ok_list = key in store.list("preflight/")
        store.delete(key)
        gone = not store.exists(key)
        vals["probe_ms"] = round(1000 * (time.perf_counter() - t1), 1)
    except Exception as e:  # any client/network/permission error is the finding
        return CheckResult("object_store", "fail", f"{store.uri}: {one_line(e)}", vals)
    if not (ok_read and ok_list and gone):
        vals.update(read_back=ok_read, listed=ok_list, deleted=gone)
        return CheckResult("object_store", "fail", f"{store.uri}: write/read/list/delete probe gave wrong results "
                                                   f"(read {ok_read}, listed {ok_list}, deleted {gone})", vals)
    ttl = cfg.train.lr_cache_ttl_hours
    cache = LRCache(store, ttl_hours=ttl) if isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0 else None
    vals["lr_cache_ttl_hours"] = ttl
    if cache is None:
        return CheckResult("object_store", "fail", f"train.lr_cache_ttl_hours={ttl!r}: expected a positive number",
                           vals)
    location = cache.object_key("KEY").rsplit("/", 1)[0]
    vals["lr_cache_location"] = f"{store.uri}/{location}"
    try:
        vals["lr_cache_entries"] = len(store.list(location + "/"))
    except Exception as e:
        return CheckResult("object_store", "fail", f"{store.uri}: LR cache {location}/ not listable ({one_line(e)})",
                           vals)
    msg = (f"{store.uri}: reachable, write/read/list/delete ok; LR cache {location}/ "
           f"({vals['lr_cache_entries']} entries), TTL {ttl:g} h")
    env_ttl = environ.get("LR_CACHE_TTL_HOURS")
    if env_ttl not in (None, ""):
        vals["lr_cache_ttl_hours_env"] = env_ttl
        try:
            same = math.isclose(float(env_ttl), float(ttl))
        except ValueError:
            same = False
        if not same:
            return CheckResult("object_store", "warn", msg + f"; LR_CACHE_TTL_HOURS={env_ttl!r} from the environment "
                                                             f"differs from train.lr_cache_ttl_hours (the engine uses "
                                                             f"the config)", vals)
    return CheckResult("object_store", "pass", msg, vals)


def run(gate) -> list[CheckResult]:
    return [run_check("object_store", lambda: check_store(gate.store, gate.cfg))]
