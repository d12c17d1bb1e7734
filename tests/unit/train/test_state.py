"""TrainState <-> checkpoint dict: the checkpoint keys are the state's field names plus the engine's objects."""

from __future__ import annotations

from dataclasses import fields

from streamguard.train.checkpoint import load_checkpoint
from streamguard.train.state import TrainState
from test_engine import run

STATE_KEYS = {"epoch", "pos", "step", "best_f1", "best_epoch", "best_state", "best_threshold", "bad_epochs",
              "history", "done", "collapse_events"}


def test_round_trip_keeps_every_field():
    s = TrainState(epoch=2, pos=3, step=17, best_f1=0.61, best_epoch=1, best_threshold=0.42, bad_epochs=1,
                   history=[{"epoch": 0}, {"epoch": 1}], collapse_events=[{"reason": "x"}])
    ckpt = {**s.to_checkpoint(), "model": {}, "lr_info": {"lr": 0.1}}
    assert set(s.to_checkpoint()) == {f.name for f in fields(TrainState)} == STATE_KEYS
    assert TrainState.from_checkpoint(ckpt) == s


def test_a_fresh_state_starts_at_the_beginning():
    s = TrainState()
    assert (s.epoch, s.pos, s.step, s.best_f1, s.best_epoch, s.best_state, s.done) == (0, 0, 0, -1.0, -1, None, False)
    assert s.history == [] and s.history is not TrainState().history


def test_the_engines_checkpoint_holds_the_state_under_its_field_names(tmp_path, local_store):
    key = "checkpoints/t/toy/last.pt"
    _, result, _ = run(tmp_path / "out", store=local_store, checkpoint_key=key, epochs=2)
    ckpt = load_checkpoint(local_store, key)
    assert set(ckpt) == STATE_KEYS | {"model", "optimizer", "scheduler", "scaler", "lr_info", "family", "seed", "rng",
                                      "format"}
    state = TrainState.from_checkpoint(ckpt)
    assert state.done and state.epoch == 2 and state.history == result.history
    assert state.best_epoch == result.best_epoch and state.best_threshold == result.threshold
