"""Inputs onto local disk as plain files, for ``streamguard.data.loaders``.

:func:`fetch` gives a local path for a path, ``file://``, ``http(s)://`` or ``s3://`` input (remote inputs
downloaded into a temporary directory); :func:`decompressed` gives that path with its ``.gz`` / ``.zst`` files
decompressed (the rules are in the module docstring of ``streamguard.data.loaders``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from streamguard.errors import StreamGuardError, UserError

# ----------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def fetch(uri: str, store_settings: Any = None) -> Iterator[Path]:
    """A local path for ``uri`` (path, ``file://``, ``http(s)://`` or ``s3://bucket/key-or-prefix``).

    Remote inputs are downloaded into a temporary directory removed afterwards. ``store_settings``: a
    ``config.StoreConfig`` for an s3:// input (retry budget; None: ``open_store``'s default).
    """
    if uri.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="sg-fetch-") as tmp:
            name = Path(urllib.request.urlparse(uri).path).name or "input"
            dest = Path(tmp) / name
            try:
                with urllib.request.urlopen(uri, timeout=60) as resp, open(dest, "wb") as f:
                    shutil.copyfileobj(resp, f, 1 << 20)
            except urllib.error.HTTPError as e:
                raise UserError(f"{uri}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                raise UserError(f"{uri}: cannot download ({getattr(e, 'reason', e)})") from None
            yield dest
        return
    if uri.startswith("s3://"):
        from streamguard.storage import open_store

        bucket, _, key = uri[len("s3://"):].partition("/")
        key = key.strip("/")
        store = open_store(f"s3://{bucket}", store_settings)
        with tempfile.TemporaryDirectory(prefix="sg-fetch-") as tmp:
            try:
                if key and store.exists(key):
                    dest = Path(tmp) / Path(key).name
                    store.get_file(key, dest)
                else:
                    keys = store.list(key + "/" if key else "")
                    if not keys:
                        raise UserError(f"{uri}: no such object or prefix")
                    dest = Path(tmp) / (Path(key).name or bucket)
                    for k in keys:
                        store.get_file(k, dest / k[len(key):].lstrip("/"))
            except StreamGuardError:  # incl. the store's verdicts: unavailable past its budget, access denied
                raise
            except Exception as e:  # anything else the client raised
                raise UserError(f"{uri}: cannot read from the object store ({type(e).__name__}: {e})") from None
            yield dest
        return
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not path.exists():
        raise UserError(f"{uri}: no such file or directory")
    yield path


# ----------------------------------------------------------------------------- compression

COMPRESSED = (".gz", ".zst")


def compressed(path: Path) -> bool:
    return path.suffix.lower() in COMPRESSED


def _open_compressed(path: Path, source: str):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")
    try:
        import zstandard
    except ImportError:
        raise UserError(f"{source}: a .zst file needs the zstandard package (pip install zstandard), "
                        "or give it as .gz or uncompressed") from None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)


def _decompress(path: Path, dest: Path, source: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _open_compressed(path, source) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except UserError:
        raise
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError; zlib/zstd errors too
        kind = "gzip" if path.suffix.lower() == ".gz" else "zstd"
        raise UserError(f"{source}: not a readable {kind} file ({type(e).__name__}: {str(e) or 'truncated'})") \
            from None


@contextlib.contextmanager
def decompressed(path: Path, display: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """``path`` with its compressed files decompressed (see ``streamguard.data.loaders``), and a map from each
    decompressed file's path (relative to the input directory; ``""`` for a single file) to its original name."""
    if path.is_file() and not compressed(path):
        yield path, {}
        return
    if path.is_dir() and not any(compressed(p) for p in path.rglob("*") if p.is_file()):
        yield path, {}
        return
    with tempfile.TemporaryDirectory(prefix="sg-unpack-") as tmp:
        if path.is_file():
            dest = Path(tmp) / path.with_suffix("").name
            _decompress(path, dest, display)
            yield dest, {"": path.name}
            return
        root, names = Path(tmp) / path.name, {}
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            rel = p.relative_to(path)
            if compressed(p):
                target = root / rel.with_suffix("")
                _decompress(p, target, f"{display.rstrip('/')}/{rel.as_posix()}")
                names[target.relative_to(root).as_posix()] = rel.as_posix()
            else:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(p.resolve(), root / rel)
        yield root, names
