"""Directories to and from an object store: every file under a local directory as one object under a key
prefix, and back. Used to move a training step's inputs and outputs between a KFP pod and the pods of a
multi-node TrainJob (``streamguard.launch``), which share only the store.

Each file goes through the store's own ``put_file``/``get_file`` (so through its retry policy); the
relative path of a file is its key below the prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamguard.storage import ObjectStore


def _prefix(prefix: str) -> str:
    return prefix.strip("/") + "/"


def put_tree(store: ObjectStore, prefix: str, directory: str | os.PathLike) -> int:
    """Upload every file under ``directory`` to ``prefix/<relative path>``; returns how many."""
    root = Path(directory)
    n = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        store.put_file(_prefix(prefix) + path.relative_to(root).as_posix(), path)
        n += 1
    return n


def get_tree(store: ObjectStore, prefix: str, directory: str | os.PathLike) -> int:
    """Download every object under ``prefix/`` into ``directory`` (created), keeping relative paths; returns
    how many."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    keys = store.list(_prefix(prefix))
    for key in keys:
        store.get_file(key, root / key[len(_prefix(prefix)):])
    return len(keys)


def delete_tree(store: ObjectStore, prefix: str) -> int:
    """Delete every object under ``prefix/``; returns how many."""
    keys = store.list(_prefix(prefix))
    for key in keys:
        store.delete(key)
    return len(keys)
