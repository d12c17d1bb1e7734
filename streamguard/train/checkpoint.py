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
import threading
from typing import Any

import numpy as np
import torch

from streamguard.errors import StoreUnavailableError
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

    The write and its fsyncs (or the S3 upload, with the store's retries) overlap the next
    training steps; ``save`` never waits for the store. At most one write is in flight;
    a snapshot saved meanwhile waits, and a newer one replaces it (only the latest matters
    for resume), so checkpoints land in order. Each write is atomic, so a kill mid-write
    leaves the previous checkpoint whole.

    A write that still fails when the store's retry budget is spent
    (:class:`StoreUnavailableError`) is skipped with a warning: training goes on and the
    previous checkpoint stays the resume point. ``close`` waits for the last snapshot and
    raises when *it* was not written (the stage must not report success without its final
    checkpoint; the next attempt resumes from the last one written). Any other failure
    (a permanent store error, a bug) raises at the next ``save`` or at ``close``.
    """

    def __init__(self, store: ObjectStore, key: str):
        self.store, self.key = store, key
        self._cv = threading.Condition()
        self._queued: tuple[bytes, str] | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._last: tuple[str, StoreUnavailableError | None] | None = None
        """(label, None when written or the error) of the last snapshot handled."""
        self.skipped = 0
        self._thread = threading.Thread(target=self._work, name="checkpoint", daemon=True)
        self._thread.start()

    def save(self, state: dict[str, Any]) -> None:
        data = serialize_checkpoint(state)
        label = f"epoch {state.get('epoch')}, step {state.get('step')}"
        with self._cv:
            if self._closed:
                raise RuntimeError(f"checkpoint writer for {self.key} is closed")
            self._raise_error()
            if self._queued is not None:
                log.debug("checkpoint (%s) superseded before it was written", self._queued[1])
            self._queued = (data, label)
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._queued is None and not self._closed:
                    self._cv.wait()
                if self._queued is None:
                    return
                (data, label), self._queued = self._queued, None
                self._busy = True
            outcome: StoreUnavailableError | None = None
            try:
                self.store.put_bytes(self.key, data)
                log.debug("checkpoint written: %s (%s)", self.key, label)
            except StoreUnavailableError as e:
                outcome = e
                self.skipped += 1
                log.warning("checkpoint %s (%s) not written, training goes on and the previous checkpoint stays "
                            "the resume point: %s", self.key, label, e)
            except BaseException as e:  # raised on the training thread at the next save/close
                with self._cv:
                    self._error = e
            with self._cv:
                self._last = (label, outcome)
                self._busy = False
                self._cv.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def wait(self) -> None:
        """Until every saved snapshot is written or skipped; raises a write's non-transient failure."""
        with self._cv:
            while self._queued is not None or self._busy:
                self._cv.wait()
            self._raise_error()

    def close(self) -> None:
        """Wait for the last snapshot; raise StoreUnavailableError when it could not be written."""
        try:
            self.wait()
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
            self._thread.join()
        if self._last is not None and self._last[1] is not None:
            raise StoreUnavailableError(f"{self._last[1]}; checkpoint {self.key} ({self._last[0]}) not written, "
                                        "the next attempt resumes from the last one written") from None


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
