"""S3/MinIO object store on the ``minio`` client.

A single ``put_object`` is atomic on S3: readers see the previous object or the
new one, never a partial write, so JSON writes are atomic here too.

Every operation runs through the store's :class:`~streamguard.storage.retry.RetryPolicy`.
The client's own urllib3 retries are switched off (``retries=False``) so that the one
policy decides, counts and logs every retry.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, TypeVar

from streamguard.errors import UserError
from streamguard.storage import ObjectNotFound
from streamguard.storage.retry import RetryPolicy, classify_s3

T = TypeVar("T")


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


def http_client(timeout_s: float, secure: bool):
    """The PoolManager minio would build (certificates from ``SSL_CERT_FILE`` or certifi), without its retries."""
    import certifi
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), maxsize=10,
        cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(), retries=False)


class S3Store:
    def __init__(self, client, bucket: str, prefix: str = "", endpoint: str = "", retry: RetryPolicy | None = None):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()

    @classmethod
    def from_env(cls, bucket: str, prefix: str = "", retry: RetryPolicy | None = None,
                 timeout_s: float = 30.0) -> "S3Store":
        from minio import Minio

        endpoint = os.environ.get("MINIO_ENDPOINT", "")
        if not endpoint:
            raise UserError("environment MINIO_ENDPOINT: not set (needed for an s3:// store)")
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):
                endpoint = endpoint[len(scheme):]
        secure = _env_bool("MINIO_SECURE", False)
        client = Minio(
            endpoint,
            access_key=os.environ.get("MINIO_ACCESS_KEY", ""),
            secret_key=os.environ.get("MINIO_SECRET_KEY", ""),
            secure=secure,
            region=os.environ.get("MINIO_REGION") or None,
            http_client=http_client(timeout_s, secure),
        )
        return cls(client, bucket, prefix, endpoint, retry)

    def _key(self, key: str) -> str:
        key = key.strip("/")
        if not key or ".." in key.split("/"):
            raise ValueError(f"invalid object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def _run(self, op: str, name: str, fn: Callable[[], T]) -> T:
        where = f"{self.endpoint} bucket {self.bucket!r} key {name!r}"
        return self.retry.run(op, where, fn, classify_s3)

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self._run("put", name, lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data)))

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        name = self._key(key)

        def get() -> bytes:
            try:
                resp = self.client.get_object(self.bucket, name)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    raise ObjectNotFound(key) from None
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._run("get", name, get)

    def get_bytes_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """The object and its ETag, or ``(None, None)`` when there is none."""
        from minio.error import S3Error

        name = self._key(key)

        def get() -> tuple[bytes | None, str | None]:
            try:
                resp = self.client.get_object(self.bucket, name)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None, None
                raise
            try:
                return resp.read(), resp.headers.get("ETag")
            finally:
                resp.close()
                resp.release_conn()

        return self._run("get", name, get)

    def put_bytes_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Write ``data`` only if the object still has ETag ``tag`` (None: only if there is no object); False when
        the store refuses (412 ``PreconditionFailed``, 409 ``ConditionalRequestConflict``).

        Sent as ``If-Match: <tag>`` / ``If-None-Match: *``, which AWS S3 and MinIO enforce. A store that ignores the
        headers (some S3 implementations and test servers) writes unconditionally and returns True: callers must
        not depend on the condition alone (``streamguard.champion`` reads the object back)."""
        from minio.error import S3Error

        name = self._key(key)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        headers.update({"If-None-Match": "*"} if tag is None else {"If-Match": tag})

        def put() -> bool:
            try:
                # minio's public put_object turns unknown headers into x-amz-meta-*: the raw PutObject call
                # (minio 7.2, pinned in images/locks) sends them as they are
                self.client._put_object(self.bucket, name, data, headers)
                return True
            except S3Error as e:
                status = getattr(getattr(e, "response", None), "status", None)
                if e.code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                    return False
                raise

        return self._run("put", name, put)

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        name = self._key(key)

        def stat() -> bool:
            try:
                self.client.stat_object(self.bucket, name)
                return True
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return False
                raise

        return self._run("stat", name, stat)

    def delete(self, key: str) -> None:
        name = self._key(key)
        self._run("delete", name, lambda: self.client.remove_object(self.bucket, name))

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix) if prefix.strip("/") else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        names = self._run("list", full + "*", lambda: [o.object_name for o in self.client.list_objects(
            self.bucket, prefix=full, recursive=True)])
        return sorted(self._strip(n) for n in names)

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        name = self._key(key)
        self._run("put", name, lambda: self.client.fput_object(self.bucket, name, str(path)))

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        from minio.error import S3Error

        name = self._key(key)
        Path(path).parent.mkdir(parents=True, exist_ok=True)

        def get() -> None:
            try:
                self.client.fget_object(self.bucket, name, str(path))
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    raise ObjectNotFound(key) from None
                raise

        self._run("get", name, get)

    def ensure_bucket(self) -> None:
        def ensure() -> None:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

        self._run("create bucket", "", ensure)
