"""Training checkpoints in the object store, for resume after preemption.

A checkpoint holds everything needed to continue exactly where training stopped:
model, optimizer, scheduler, AMP grad scaler, RNG states (Python, NumPy, torch,
CUDA), epoch, global step, position in the epoch, best score/weights/threshold,
early-stopping counter, history and the LR decision. It is serialised with
``torch.save`` into memory and written with one ``put_bytes`` (atomic on both
store backends), so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import logging
import random
from typing import Any

import numpy as np
import torch

from streamguard.storage import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def serialize_checkpoint(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state, "rng": rng_state()}, buf)
    return buf.getvalue()


def save_checkpoint(store: ObjectStore, key: str, state: dict[str, Any]) -> None:
    store.put_bytes(key, serialize_checkpoint(state))
    log.debug("checkpoint written: %s (epoch %s, step %s)", key, state.get("epoch"), state.get("step"))


class CheckpointWriter:
    """Serialises on the training thread (a consistent snapshot), writes in the background.

    The write and its fsyncs (or the S3 upload) overlap the next training steps. At
    most one write is in flight: ``save`` first waits for the previous one, so
    checkpoints land in order, and a failed write raises at the next ``save`` or at
    ``close``. Each write is atomic, so a kill mid-write leaves the previous
    checkpoint whole.
    """

    def __init__(self, store: ObjectStore, key: str):
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.key = store, key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending = None

    def save(self, state: dict[str, Any]) -> None:
        data = serialize_checkpoint(state)
        self.wait()
        self._pending = self._pool.submit(self.store.put_bytes, self.key, data)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def load_checkpoint(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``key``, or None when there is none (a corrupt one is logged and ignored)."""
    try:
        raw = store.get_bytes(key)
    except ObjectNotFound:
        return None
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or foreign file: start over rather than crash
        log.warning("checkpoint %s unreadable (%s); starting from scratch", key, e)
        return None
    if state.get("format") != CHECKPOINT_FORMAT:
        log.warning("checkpoint %s has format %s, expected %s; ignoring", key, state.get("format"), CHECKPOINT_FORMAT)
        return None
    return state
