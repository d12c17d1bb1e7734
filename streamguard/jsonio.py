"""Strict JSON files on the local file system, written atomically (``streamguard.atomic``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from streamguard.atomic import write_bytes_atomic

__all__ = ["dumps", "read_json", "write_bytes_atomic", "write_json_atomic"]


def dumps(obj: Any) -> bytes:
    """Strict JSON (NaN/Infinity become null, so every reader can parse it)."""
    return (json.dumps(_finite(obj), indent=2, sort_keys=True, default=_default, allow_nan=False) + "\n").encode()


def _finite(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    try:
        import numpy as np

        if isinstance(o, np.floating):
            return _finite(float(o))
    except ImportError:  # pragma: no cover
        pass
    return o


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, dumps(obj))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):  # e.g. a config section inside vars(TrainConfig)
        return dataclasses.asdict(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
