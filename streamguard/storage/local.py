"""Local-directory object store (the embedded default).

The directory may be a network filesystem (NFS, a CSI volume): its timeouts and I/O
errors (``ETIMEDOUT``, ``EIO`` ...) go through the same retry policy as S3 requests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from streamguard.atomic import atomic_path, write_bytes_atomic
from streamguard.storage import ObjectNotFound
from streamguard.storage.retry import RetryPolicy, classify_os

T = TypeVar("T")


def _check_key(key: str) -> str:
    parts = key.strip("/").split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


class LocalStore:
    def __init__(self, root: str | os.PathLike, retry: RetryPolicy | None = None):
        self.root = Path(root).resolve()
        self.retry = retry or RetryPolicy()
        self._run("create", "", lambda: self.root.mkdir(parents=True, exist_ok=True))
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _run(self, op: str, key: str, fn: Callable[[], T]) -> T:
        return self.retry.run(op, f"{self.root} key {key!r}", fn, classify_os)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        self._run("put", key, lambda: write_bytes_atomic(dest, data))

    def get_bytes(self, key: str) -> bytes:
        src = self._path(key)

        def get() -> bytes:
            try:
                return src.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                raise ObjectNotFound(key) from None

        return self._run("get", key, get)

    def exists(self, key: str) -> bool:
        src = self._path(key)
        return self._run("stat", key, src.is_file)

    def delete(self, key: str) -> None:
        src = self._path(key)
        self._run("delete", key, lambda: src.unlink(missing_ok=True))

    def list(self, prefix: str = "") -> list[str]:
        def walk() -> list[str]:
            out = []
            for p in self.root.rglob("*"):
                if p.is_file() and not p.name.startswith("."):
                    key = p.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        out.append(key)
            return sorted(out)

        return self._run("list", prefix + "*", walk)

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        dest = self._path(key)

        def put() -> None:
            with atomic_path(dest) as tmp:
                shutil.copyfile(path, tmp)

        self._run("put", key, put)

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        src = self._path(key)

        def get() -> None:
            if not src.is_file():
                raise ObjectNotFound(key)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, path)

        self._run("get", key, get)

    def get_bytes_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """The object and its tag (SHA-256 of the content), or ``(None, None)`` when there is none."""
        try:
            data = self.get_bytes(key)
        except ObjectNotFound:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    def put_bytes_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Write ``data`` only if the object still has ``tag`` (None: only if there is no object); False if not.

        A compare-and-swap: an exclusive ``flock`` on a hidden lock file beside the object serialises every
        conditional writer of the key on this host (and on network file systems that implement ``flock``)."""
        dest = self._path(key)

        def put() -> bool:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest.with_name(f".{dest.name}.lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    try:
                        now = hashlib.sha256(dest.read_bytes()).hexdigest()
                    except FileNotFoundError:
                        now = None
                    if now != tag:
                        return False
                    write_bytes_atomic(dest, data)
                    return True
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

        return self._run("put", key, put)
