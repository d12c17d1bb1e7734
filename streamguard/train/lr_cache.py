"""Learning-rate cache in the object store, and the one place that decides a run's LR.

An entry is one JSON object at ``<prefix>/<key>.json``::

    {"lr": 3.1e-4, "created_at": 1767225600.0, "ttl_hours": 168.0,
     "key_parts": {...}, "source": "finder", ...}

The key (``lr_cache_key``) is the SHA-256 of the canonical JSON (sorted keys,
no whitespace) of everything the LR depends on: data fingerprint, model
identity and config, batch size, sequence length, LR range, finder steps and rule.

An entry older than the cache's ``ttl_hours`` (the current setting, not the
one recorded in the entry) is expired; one that does not parse, is not an
object, has an ``lr`` that is not a finite positive number or a
``created_at`` that is not a plausible time is corrupt. Both read as a miss
(logged); the next ``put`` overwrites them. Other read errors are a miss too,
except the store's own verdicts: an outage past ``store.retry_budget_s``
(``StoreUnavailableError``, exit 5; the run would lose its checkpoints anyway)
and a permanent refusal (``StoreAccessError``, exit 2). A failed ``put`` only
costs the next run the finder.

``resolve_lr`` applies the policy: a fixed ``opt_cfg.lr`` wins; else a cache
hit; else the LR finder when ``train_cfg.lr_finder`` (its result cached only
when it really came from the finder); else ``opt_cfg.fallback_lr``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from typing import Any, Callable

from streamguard.errors import StreamGuardError
from streamguard.storage import ObjectNotFound, ObjectStore, get_json, put_json

log = logging.getLogger(__name__)

# Time allowed between a writer's clock and ours before a created_at "in the future" counts as corrupt.
_CLOCK_SKEW_S = 3600.0


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str, allow_nan=True)


def lr_cache_key(**parts: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``parts`` (order of keyword arguments does not matter)."""
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class LRCache:
    """LR entries in ``store`` under ``prefix``; expiry after ``ttl_hours`` by ``clock()`` (seconds)."""

    def __init__(self, store: ObjectStore, ttl_hours: float = 168.0, clock: Callable[[], float] = time.time,
                 prefix: str = "lr_cache"):
        self.store = store
        self.ttl_hours = float(ttl_hours)
        self.clock = clock
        self.prefix = prefix.strip("/")
        self.last_status: str | None = None
        """``hit``, ``miss``, ``expired``, ``corrupt`` or ``error`` for the last ``get``."""

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}.json" if self.prefix else f"{key}.json"

    def _miss(self, status: str, key: str, msg: str, *args: Any, level: int = logging.INFO) -> None:
        self.last_status = status
        log.log(level, "LR cache %s %s: " + msg, status, key[:12], *args)

    def get(self, key: str) -> dict[str, Any] | None:
        """The live entry for ``key``, or None (miss, expired, corrupt or unreadable; logged)."""
        okey = self.object_key(key)
        try:
            entry = get_json(self.store, okey)
        except ObjectNotFound:
            self._miss("miss", key, "no entry at %s", okey)
            return None
        except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
            self._miss("corrupt", key, "%s does not parse (%s); ignoring it", okey, e, level=logging.WARNING)
            return None
        except StreamGuardError:  # retries spent, or access denied: the store's one-line verdict
            raise
        except Exception as e:  # anything else: run without the cache
            self._miss("error", key, "cannot read %s (%s: %s)", okey, type(e).__name__, e, level=logging.WARNING)
            return None
        problem = self._validate(entry)
        if problem:
            self._miss("corrupt", key, "%s: %s; ignoring it", okey, problem, level=logging.WARNING)
            return None
        now = self.clock()
        age_h = (now - entry["created_at"]) / 3600.0
        if now - entry["created_at"] < -_CLOCK_SKEW_S:
            self._miss("corrupt", key, "%s: created_at %.0f is in the future (now %.0f); ignoring it", okey,
                       entry["created_at"], now, level=logging.WARNING)
            return None
        if age_h > self.ttl_hours:
            self._miss("expired", key, "%s is %.1f h old (ttl %.1f h)", okey, age_h, self.ttl_hours)
            return None
        self.last_status = "hit"
        log.info("LR cache hit %s: lr %.3g (%.1f h old, ttl %.1f h)", key[:12], entry["lr"], age_h, self.ttl_hours)
        return entry

    @staticmethod
    def _validate(entry: Any) -> str | None:
        if not isinstance(entry, dict):
            return f"expected a JSON object, got {type(entry).__name__}"
        lr = entry.get("lr")
        if not _is_number(lr) or lr <= 0:
            return f"lr {lr!r} is not a finite positive number"
        if not _is_number(entry.get("created_at")):
            return f"created_at {entry.get('created_at')!r} is not a finite number"
        ttl = entry.get("ttl_hours")
        if ttl is not None and not _is_number(ttl):
            return f"ttl_hours {ttl!r} is not a number"
        return None

    def put(self, key: str, lr: float, **meta: Any) -> dict[str, Any]:
        """Write (or overwrite) the entry for ``key`` atomically; returns it. Store errors propagate."""
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"LR cache: refusing to store lr {lr!r}")
        entry = {**meta, "lr": lr, "created_at": float(self.clock()), "ttl_hours": self.ttl_hours}
        entry.setdefault("key_parts", {})
        put_json(self.store, self.object_key(key), entry)
        log.info("LR cache stored %s: lr %.3g", key[:12], lr)
        return entry


def resolve_lr(opt_cfg: Any, train_cfg: Any, cache: LRCache | None, key_parts: dict[str, Any],
               run_finder: Callable[[], Any]) -> dict[str, Any]:
    """Decide the LR: fixed, cache, finder or fallback. Returns a JSON-ready record.

    Keys: ``lr``, ``lr_source`` (fixed | cache | finder | fallback), ``reason``
    (why a fallback, or a note), ``cache_key``, ``cache`` (hit | miss | expired |
    corrupt | error | disabled | not_used), ``key_parts``; plus ``cached_at``
    on a hit and ``finder`` (the sweep) when the finder ran. The LR range and
    the finder steps and rule are added to ``key_parts`` because the finder's
    answer depends on them.
    """
    parts = {**key_parts,
             "lr_min": getattr(opt_cfg, "lr_min", None), "lr_max": getattr(opt_cfg, "lr_max", None),
             "lr_finder_steps": getattr(train_cfg, "lr_finder_steps", None),
             "lr_finder_rule": getattr(train_cfg, "lr_finder_rule", None)}
    parts = json.loads(_canonical(parts))  # what is hashed is exactly what is recorded
    key = lr_cache_key(**parts)
    rec: dict[str, Any] = {"cache_key": key, "key_parts": parts, "reason": None}

    if opt_cfg.lr is not None:
        log.info("LR fixed by config: %.3g", opt_cfg.lr)
        return {**rec, "lr": float(opt_cfg.lr), "lr_source": "fixed", "cache": "not_used"}

    if cache is not None:
        entry = cache.get(key)
        rec["cache"] = cache.last_status
        if entry is not None:
            return {**rec, "lr": float(entry["lr"]), "lr_source": "cache", "cached_at": entry["created_at"]}
    else:
        rec["cache"] = "disabled"
        log.info("LR cache disabled (no object store)")

    if not getattr(train_cfg, "lr_finder", False):
        reason = "LR finder disabled and no cached LR"
        log.warning("%s: using fallback lr %.3g", reason, opt_cfg.fallback_lr)
        return {**rec, "lr": float(opt_cfg.fallback_lr), "lr_source": "fallback", "reason": reason}

    result = run_finder()
    src = "finder" if result.source == "finder" else "fallback"
    out = {**rec, "lr": float(result.lr), "lr_source": src, "reason": result.reason,
           "finder": {"suggested": getattr(result, "suggested", None), "stopped": getattr(result, "stopped", None),
                      "lrs": list(result.lrs), "losses": list(result.losses)}}
    if src == "finder" and cache is not None:
        try:
            cache.put(key, result.lr, key_parts=parts, source="finder", suggested=getattr(result, "suggested", None))
            out["cache_written"] = True
        except Exception as e:  # a cache that cannot be written costs time next run, not this run
            log.warning("LR cache: could not store %s (%s: %s)", key[:12], type(e).__name__, e)
            out["cache_written"] = False
    return out
