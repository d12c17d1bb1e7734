"""The one atomic file writer: readers see the old file or the new one, never a part.

Every file StreamGuard writes atomically (JSON reports, samples, the demo data,
graph shards, local object-store objects, checkpoints) goes through
:func:`atomic_path`: a temporary file in the target's directory, written by the
caller, flushed and closed, ``fsync``-ed, renamed over the target with
``os.replace``, and then the directory ``fsync``-ed so that the rename itself
survives a power loss.

* ``atomic_write(path, "wb" | "w")`` yields an open file (text mode is UTF-8 with
  ``\\n`` newlines); ``write_bytes_atomic(path, data)`` writes bytes.
* ``atomic_path(path)`` yields the temporary *path*, for writers that open the
  file themselves (``torch.save`` to a path).

The temporary file is ``.<name>.tmp-<random>``: hidden (``LocalStore.list`` skips
dot files), unique (two writers of one target never share it), and its text
before the last dot is ``.<name>`` — ``torch.save`` names its archive after that,
so shards do not depend on the random part. On any error before the rename the
temporary file is removed and the old file is untouched; a process killed
before the rename leaves only a hidden temporary file, never a partial file
under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import IO, Iterator, Literal

log = logging.getLogger(__name__)


def fsync_dir(directory: str | os.PathLike) -> None:
    """``fsync`` a directory, making a rename inside it durable (a no-op where the file system refuses)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:  # pragma: no cover - platforms without directory handles
        log.debug("cannot open directory %s for fsync: %s", directory, e)
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems (e.g. certain network mounts) do not fsync directories
        log.debug("fsync of directory %s failed: %s", directory, e)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it: fsync, rename, fsync directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: Literal["wb", "w"] = "wb") -> Iterator[IO]:
    """Yield a file open for writing; on leaving the block it replaces ``path`` atomically (see module doc)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode {mode!r} (expected 'wb' or 'w')")
    text = {} if mode == "wb" else {"encoding": "utf-8", "newline": "\n"}
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **text) as f:
        yield f
        f.flush()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)
