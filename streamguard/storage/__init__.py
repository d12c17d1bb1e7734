"""Object store: one small interface, a local-directory backend and an S3/MinIO backend.

``open_store(uri)`` picks the backend from the URI:

* ``/some/dir`` or ``file:///some/dir`` -> :class:`LocalStore` (the embedded default)
* ``s3://bucket/prefix`` -> :class:`S3Store`; endpoint and credentials come from
  ``MINIO_ENDPOINT``, ``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``, ``MINIO_SECURE``.

Keys are ``/``-separated relative paths. ``put_bytes`` is atomic on both backends
(temp file + rename locally; a single PUT on S3), so ``put_json`` is too.

Every operation of both backends goes through one retry policy (``storage/retry.py``):
transient errors are retried within ``store.retry_budget_s`` and then raise
``StoreUnavailableError`` (exit 5); permanent ones raise ``StoreAccessError`` (exit 2) at once.
Callers holding a config pass its ``store`` section to ``open_store``; the others get the
defaults with the ``STORE_RETRY_BUDGET_S`` environment variable applied (``config.store_settings``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol, runtime_checkable

from streamguard.errors import UserError
from streamguard.jsonio import dumps


class ObjectNotFound(KeyError):
    """The key does not exist in the store."""


@runtime_checkable
class ObjectStore(Protocol):
    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def put_file(self, key: str, path: str | os.PathLike) -> None: ...
    def get_file(self, key: str, path: str | os.PathLike) -> None: ...


def put_json(store: ObjectStore, key: str, obj: Any) -> None:
    store.put_bytes(key, dumps(obj))


def get_json(store: ObjectStore, key: str) -> Any:
    """Parse the JSON object at ``key``; raises ObjectNotFound or ValueError (corrupt)."""
    return json.loads(store.get_bytes(key))


def open_store(uri: str | None = None, settings: Any = None) -> ObjectStore:
    """Open the store named by ``uri`` (default: ``$STREAMGUARD_STORE`` or ``./.streamguard/store``).

    ``settings``: a ``config.StoreConfig`` (retry budget, request timeout); None: ``config.store_settings()``.
    """
    from streamguard.config import store_settings
    from streamguard.storage.retry import RetryPolicy

    settings = settings if settings is not None else store_settings()
    retry = RetryPolicy.from_settings(settings)
    uri = uri or os.environ.get("STREAMGUARD_STORE") or os.path.join(".streamguard", "store")
    if uri.startswith("s3://"):
        from streamguard.storage.s3 import S3Store

        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise UserError(f"store URI {uri!r}: missing bucket name (expected s3://bucket/prefix)")
        return S3Store.from_env(bucket=bucket, prefix=prefix, retry=retry, timeout_s=float(settings.timeout_s))
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        raise UserError(f"store URI {uri!r}: unknown scheme (use a path, file:// or s3://)")
    from streamguard.storage.local import LocalStore

    return LocalStore(uri, retry=retry)


__all__ = ["ObjectStore", "ObjectNotFound", "open_store", "put_json", "get_json"]
