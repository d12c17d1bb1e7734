"""S3/MinIO object store on the ``minio`` client.

A single ``put_object`` is atomic on S3: readers see the previous object or the
new one, never a partial write, so JSON writes are atomic here too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from streamguard.errors import UserError
from streamguard.storage import ObjectNotFound


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


class S3Store:
    def __init__(self, client, bucket: str, prefix: str = "", endpoint: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint

    @classmethod
    def from_env(cls, bucket: str, prefix: str = "") -> "S3Store":
        from minio import Minio

        endpoint = os.environ.get("MINIO_ENDPOINT", "")
        if not endpoint:
            raise UserError("environment MINIO_ENDPOINT: not set (needed for an s3:// store)")
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):
                endpoint = endpoint[len(scheme):]
        client = Minio(
            endpoint,
            access_key=os.environ.get("MINIO_ACCESS_KEY", ""),
            secret_key=os.environ.get("MINIO_SECRET_KEY", ""),
            secure=_env_bool("MINIO_SECURE", False),
            region=os.environ.get("MINIO_REGION") or None,
        )
        return cls(client, bucket, prefix, endpoint)

    def _key(self, key: str) -> str:
        key = key.strip("/")
        if not key or ".." in key.split("/"):
            raise ValueError(f"invalid object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data))

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, self._key(key))
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix) if prefix.strip("/") else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        names = [o.object_name for o in self.client.list_objects(self.bucket, prefix=full, recursive=True)]
        return sorted(self._strip(n) for n in names)

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        self.client.fput_object(self.bucket, self._key(key), str(path))

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        from minio.error import S3Error

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.fget_object(self.bucket, self._key(key), str(path))
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)
