"""A dataset's version: a short string that changes when the data behind a URI changes.

KFP caches ``ingest`` by its inputs; the URI alone would let a run reuse last night's dataset after
the object was replaced. The pipeline's ``source_version`` step puts this version into ingest's
inputs (read at run time, never cached), and ``make submit`` fills the ``data_version`` parameter
with it. One function, used by both:

* ``s3://bucket/key``: ``etag:<ETag>`` of the object; a prefix: ``etags:<hash of its keys and ETags>``
* ``http(s)://``: ``etag:<ETag>``, else ``http:<Content-Length>-<Last-Modified>`` (a HEAD request)
* a path (or ``file://``): ``stat:<size>-<mtime ns>`` of a file, ``tree:<hash of sizes and mtimes>`` of a directory

A server that tells nothing about its data gives ``unknown:<now>``: such a dataset is ingested again
on every run rather than served stale.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from streamguard.errors import UserError


def _digest(rows: list[str]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def _s3(uri: str) -> str:
    from streamguard.storage import open_store

    bucket, _, key = uri[len("s3://"):].partition("/")
    key = key.strip("/")
    store = open_store(f"s3://{bucket}")
    try:
        if key:
            try:
                return f"etag:{store.client.stat_object(bucket, key).etag}"
            except Exception as e:  # minio S3Error NoSuchKey: the URI may name a prefix
                if getattr(e, "code", "") not in ("NoSuchKey", "NoSuchObject"):
                    raise
        rows = sorted(f"{o.object_name}\t{o.etag}" for o in
                      store.client.list_objects(bucket, prefix=f"{key}/" if key else "", recursive=True))
    except UserError:
        raise
    except Exception as e:  # minio errors: bad credentials, no bucket, no endpoint
        raise UserError(f"{uri}: cannot read its version from the object store ({type(e).__name__}: {e})") from None
    if not rows:
        raise UserError(f"{uri}: no such object or prefix")
    return f"etags:{_digest(rows)}"


def _http(uri: str) -> str:
    try:
        with urllib.request.urlopen(urllib.request.Request(uri, method="HEAD"), timeout=30) as resp:
            headers = resp.headers
    except urllib.error.HTTPError as e:
        raise UserError(f"{uri}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"{uri}: cannot reach it ({getattr(e, 'reason', e)})") from None
    if headers.get("ETag"):
        return f"etag:{headers['ETag'].strip(chr(34))}"
    if headers.get("Last-Modified") or headers.get("Content-Length"):
        return f"http:{headers.get('Content-Length', '')}-{headers.get('Last-Modified', '')}"
    return f"unknown:{time.time_ns()}"


def _path(uri: str) -> str:
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if path.is_file():
        st = path.stat()
        return f"stat:{st.st_size}-{st.st_mtime_ns}"
    if path.is_dir():
        rows = []
        for root, _, files in os.walk(path):
            for name in files:
                st = (Path(root) / name).stat()
                rows.append(f"{(Path(root) / name).relative_to(path)}\t{st.st_size}\t{st.st_mtime_ns}")
        return f"tree:{_digest(sorted(rows))}"
    raise UserError(f"{uri}: no such file or directory")


def data_version(uri: str) -> str:
    """The version of the data at ``uri`` (see the module docstring); UserError when it cannot be read."""
    if uri.startswith("s3://"):
        return _s3(uri)
    if uri.startswith(("http://", "https://")):
        return _http(uri)
    return _path(uri)
