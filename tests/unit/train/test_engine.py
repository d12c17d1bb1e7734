"""The training engine end to end on tiny models: threshold, early stopping, class weights, outputs,
the LR decision (finder -> cache -> expiry -> corrupt entry, both store backends; failing finder) and
the reduce_lr collapse action."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from streamguard.config import CollapseConfig, OptimConfig, TrainConfig
from streamguard.eval.metrics import compute_metrics, tune_threshold
from streamguard.storage import get_json
from streamguard.train import amp, engine
from streamguard.train.engine import TrainJob, fit, write_outputs
from train_toys import MLP, RecordingScaler

T0 = 1_767_225_600.0  # a fixed "now" for the LR cache clock


def items(n: int, seed: int, positives: int | None = None, d: int = 8, shift: float = 1.2) -> list[dict]:
    """Two overlapping Gaussian blobs as per-item dicts; ``positives`` fixes the class counts exactly."""
    g = torch.Generator().manual_seed(seed)
    if positives is None:
        y = torch.randint(0, 2, (n,), generator=g)
    else:
        y = torch.zeros(n, dtype=torch.long)
        y[torch.randperm(n, generator=g)[:positives]] = 1
    x = torch.randn(n, d, generator=g)
    x[:, 0] += torch.where(y == 1, shift, -shift)
    return [{"x": x[i], "labels": int(y[i])} for i in range(n)]


def collate(batch: list[dict]) -> dict:
    return {"x": torch.stack([it["x"] for it in batch]), "labels": torch.tensor([it["labels"] for it in batch])}


def labels(ds) -> list[int]:
    return [it["labels"] for it in ds]


def make_job(out: Path, model=None, *, train=None, valid=None, test=None, store=None, checkpoint_key=None,
             clock=None, tc: dict | None = None, **opt) -> TrainJob:
    torch.manual_seed(0)
    opt = {"epochs": 3, "batch_size": 16, "lr": 0.01, "patience": 10, "fallback_lr": 3e-3, **opt}
    tc = {"deterministic": False, "checkpoint_every_steps": 0, "lr_finder_steps": 30, **(tc or {})}
    extra = {"clock": clock} if clock is not None else {}
    return TrainJob(family="toy", model=model if model is not None else MLP(), train=train or items(128, 1),
                    valid=valid or items(64, 2), test=test or items(64, 3), collate=collate, labels=labels,
                    opt=OptimConfig(**opt), train_cfg=TrainConfig(**tc), seed=5, out_dir=out, store=store,
                    checkpoint_key=checkpoint_key, lr_key_parts={"data": "toy-v1"}, **extra)


def run(out: Path, **kw) -> tuple[TrainJob, engine.TrainResult, dict]:
    job = make_job(out, **kw)
    result = fit(job)
    write_outputs(job, result, out)
    return job, result, strict_json(out / "training_metadata.json")


def _no_constants(c: str):
    raise ValueError(f"non-standard JSON constant {c}")


def strict_json(path: Path):
    """Parse as any JSON reader would: NaN/Infinity are not JSON."""
    return json.loads(Path(path).read_text(), parse_constant=_no_constants)


# ------------------------------------------------------------------ basics
def test_threshold_is_tuned_on_valid_and_test_metrics_are_computed_at_it(tmp_path):
    job, result, meta = run(tmp_path, train=items(160, 1, positives=48), valid=items(64, 2, positives=20),
                            test=items(64, 3, positives=20))
    metrics = strict_json(tmp_path / "metrics.json")
    thr = metrics["threshold"]
    assert thr == meta["threshold"] == result.threshold == meta["history"][meta["best_epoch"]]["threshold"]
    assert thr != 0.5  # tuned, not the default

    # the exported model is the best one: its validation predictions give back the same threshold and metrics
    vprobs, _ = engine.predict(job.model, job.valid, collate, 32, torch.device("cpu"))
    assert tune_threshold(labels(job.valid), vprobs) == pytest.approx(thr, abs=1e-9)
    assert metrics["valid"]["f1"] == pytest.approx(compute_metrics(labels(job.valid), vprobs, thr)["f1"])

    # test metrics recomputed from predictions.jsonl at that threshold
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(job.test)
    assert [r["label"] for r in rows] == labels(job.test)
    assert all(r["pred"] == int(r["prob"] >= thr) for r in rows)
    again = compute_metrics([r["label"] for r in rows], [r["prob"] for r in rows], thr)
    assert metrics["test"]["threshold"] == thr
    for k, v in metrics["test"].items():
        assert again[k] == pytest.approx(v, abs=1e-5), k
    assert again["tp"] + again["fp"] == sum(r["pred"] for r in rows)


class Saboteur(MLP):
    """Learns the task for ``good_steps`` training steps, then is trained on negated inputs (validation F1 falls).

    Records its weights at the first evaluation call after training: what each epoch's validation saw.
    """

    def __init__(self, good_steps: int):
        super().__init__()
        self.good_steps, self.steps, self.seen_at = good_steps, 0, None
        self.snapshots: list[dict] = []

    def forward(self, batch):
        x = batch["x"]
        if self.training:
            self.steps += 1
            if self.steps > self.good_steps:
                x = -x
        elif self.seen_at != self.steps:
            self.seen_at = self.steps
            self.snapshots.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return self.net(x)


def test_early_stopping_exports_the_best_epochs_weights(tmp_path):
    # the sudden unlearning is a loss spike the collapse monitor would (rightly) stop; this test is about early
    # stopping, so the spike thresholds are raised through the config
    model = Saboteur(good_steps=8)  # 128 items / 16 = 8 steps: epoch 0 learns, later epochs unlearn
    job, result, meta = run(tmp_path, model=model, epochs=8, patience=2, lr=0.05, train=items(128, 1, shift=2.0),
                            valid=items(64, 2, shift=2.0),
                            tc={"collapse": CollapseConfig(loss_factor=1e9, grad_factor=1e9)})
    hist = meta["history"]
    f1s = [h["valid_f1"] for h in hist]
    assert meta["best_epoch"] == 0 and len(hist) == 3, f1s  # stopped early: 1 good + patience bad epochs
    assert max(f1s[1:]) < f1s[0]
    assert len(model.snapshots) == len(hist)
    exported = model.state_dict()
    for k, v in model.snapshots[0].items():
        assert torch.equal(exported[k], v), k
    assert any(not torch.equal(exported[k], v) for k, v in model.snapshots[-1].items())
    assert result.valid_metrics["f1"] == pytest.approx(f1s[0])
    assert strict_json(tmp_path / "metrics.json")["valid"]["f1"] == pytest.approx(f1s[0])


def _separating_linear() -> torch.nn.Module:
    """A linear model that already separates ``items`` (they differ in x[:, 0]): a good answer before training."""
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 2)
            with torch.no_grad():
                self.lin.weight.zero_()
                self.lin.bias.zero_()
                self.lin.weight[0, 0], self.lin.weight[1, 0] = -1.0, 1.0

        def forward(self, batch):
            return self.lin(batch["x"])

    return Linear()


@pytest.mark.parametrize("candidate", [True, False])
def test_the_initial_model_competes_when_asked_and_is_exported_when_no_epoch_beats_it(tmp_path, candidate):
    flipped = [{**it, "labels": 1 - it["labels"]} for it in items(128, 1, shift=2.0)]  # training only unlearns
    model = _separating_linear()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    valid = items(64, 2, shift=2.0)
    with torch.no_grad():
        p0 = torch.softmax(model(collate(valid)), -1)[:, 1].numpy()
    f1_0 = compute_metrics(labels(valid), p0, tune_threshold(labels(valid), p0))["f1"]
    job = make_job(tmp_path, model=model, train=flipped, valid=valid, epochs=3, lr=0.05)
    job.initial_candidate = candidate
    result = fit(job)
    hist = result.history
    if candidate:
        assert hist[0]["epoch"] == -1 and hist[0]["train_loss"] is None and hist[0]["valid_f1"] == f1_0
        assert len(hist) == 4 and all(h["valid_f1"] < f1_0 for h in hist[1:])
        assert result.best_epoch == -1 and result.valid_metrics["f1"] == f1_0
        assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())  # exported as it started
    else:
        assert [h["epoch"] for h in hist] == [0, 1, 2] and result.best_epoch >= 0
        assert result.valid_metrics["f1"] < f1_0


def test_class_weights_come_from_the_training_labels(tmp_path, monkeypatch):
    seen = []
    real = engine.loss_fn

    def spy(model, batch, class_weights=None, **kw):
        seen.append(class_weights.detach().clone())
        return real(model, batch, class_weights, **kw)

    monkeypatch.setattr(engine, "loss_fn", spy)
    # train 48 negatives / 16 positives; valid and test balanced (their labels must not count)
    run(tmp_path, epochs=1, train=items(64, 1, positives=16), valid=items(32, 2, positives=16),
        test=items(32, 3, positives=16))
    assert seen
    expected = torch.tensor([64 / (2 * 48), 64 / (2 * 16)])
    for w in seen:
        assert torch.allclose(w, expected)


def test_every_json_parses_and_metadata_is_complete(tmp_path, local_store):
    out = tmp_path / "out"
    job, result, meta = run(out, store=local_store, checkpoint_key="checkpoints/t/toy/last.pt", lr=None,
                            clock=lambda: T0, tc={"checkpoint_every_steps": 3})
    for key in ("seed", "config", "lr", "lr_source", "history", "best_epoch", "threshold", "timings", "hardware",
                "versions"):
        assert key in meta, key
    assert meta["seed"] == 5
    assert meta["config"]["optim"]["batch_size"] == 16 and meta["config"]["train"]["checkpoint_every_steps"] == 3
    assert meta["lr_source"] in ("finder", "fallback") and meta["lr"] == meta["lr_info"]["lr"] > 0
    assert [h["epoch"] for h in meta["history"]] == [0, 1, 2]
    for h in meta["history"]:
        assert {"epoch", "train_loss", "valid_f1", "valid_roc_auc", "threshold", "lr", "step"} <= set(h)
    assert 0 <= meta["best_epoch"] <= 2 and 0 < meta["threshold"] < 1
    assert meta["timings"]["train_seconds"] > 0
    assert meta["hardware"]["device"] == "cpu" and meta["versions"]["torch"] == torch.__version__
    assert meta["collapse_events"] == []

    written = sorted(p.name for p in out.iterdir())
    assert written == ["metrics.json", "predictions.jsonl", "training_metadata.json"]
    for p in out.rglob("*.json"):
        strict_json(p)
    for line in (out / "predictions.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=_no_constants)
    store_json = [k for k in local_store.list() if k.endswith(".json")]
    assert store_json == [f"lr_cache/{meta['lr_info']['cache_key']}.json"]
    for k in store_json:
        json.loads(local_store.get_bytes(k), parse_constant=_no_constants)
    assert local_store.exists("checkpoints/t/toy/last.pt")
    assert not any(".tmp" in p.name for p in Path(local_store.uri).rglob("*"))  # no temp file of the atomic writer


# ----------------------------------------------------------- LR decisions
def test_the_lr_sweep_uses_the_engines_scaler_and_grad_clip(tmp_path, monkeypatch):
    calls: list[str] = []
    scaler = RecordingScaler(torch.amp.GradScaler("cpu", init_scale=1024.0), calls)
    monkeypatch.setattr(amp, "make_scaler", lambda ctx, **kw: scaler)
    seen: dict = {}
    real_find_lr = engine.find_lr

    def spy(*a, **k):
        seen.update(k)
        return real_find_lr(*a, **k)

    monkeypatch.setattr(engine, "find_lr", spy)
    job, result, meta = run(tmp_path, lr=None, epochs=1, grad_clip=0.25)
    assert seen["scaler"] is scaler and seen["max_norm"] == 0.25
    sweep_steps = len(meta["lr_info"]["finder"]["lrs"])
    train_steps = meta["history"][-1]["step"]
    assert sweep_steps >= 10 and calls.count("scale") == sweep_steps + train_steps


def test_lr_finder_then_cache_then_expired_then_corrupt(store, tmp_path):
    now = [T0]

    def go(tag: str) -> dict:
        return run(tmp_path / tag, store=store, lr=None, epochs=1, clock=lambda: now[0])[2]

    first = go("first")
    assert first["lr_source"] == "finder", first["lr_info"]["reason"]
    assert first["lr_info"]["cache"] == "miss" and first["lr_info"]["cache_written"] is True
    okey = f"lr_cache/{first['lr_info']['cache_key']}.json"
    entry = get_json(store, okey)
    assert entry["lr"] == first["lr"] and entry["created_at"] == T0

    now[0] += 3600.0
    second = go("second")
    assert second["lr_source"] == "cache" and second["lr_info"]["cache"] == "hit"
    assert second["lr"] == first["lr"] and second["lr_info"]["cached_at"] == T0
    assert "finder" not in second["lr_info"]

    now[0] = T0 + 168 * 3600.0 + 1.0  # one second past the default TTL
    expired = go("expired")
    assert expired["lr_source"] == "finder" and expired["lr_info"]["cache"] == "expired"
    assert get_json(store, okey)["created_at"] == now[0]  # rewritten

    for corrupt in (b'{"lr": 0.001, "created_', b'{"lr": -1, "created_at": 1.0}', b"[]"):
        store.put_bytes(okey, corrupt)
        now[0] += 60.0
        replaced = go("corrupt")
        assert replaced["lr_source"] == "finder" and replaced["lr_info"]["cache"] == "corrupt", corrupt
        entry = get_json(store, okey)
        assert entry["created_at"] == now[0] and entry["lr"] == replaced["lr"]
    assert go("after")["lr_source"] == "cache"


class FailsFirstCalls(MLP):
    """Raises in its first ``n`` training forward passes: the LR finder's sweep (which stops at the first) crashes."""

    def __init__(self, n: int = 1):
        super().__init__()
        self.left = n

    def forward(self, batch):
        if self.training and self.left > 0:
            self.left -= 1
            raise RuntimeError("kaboom in forward")
        return super().forward(batch)


def test_failing_finder_gives_the_fallback_with_its_reason(store, tmp_path):
    job, result, meta = run(tmp_path / "a", model=FailsFirstCalls(), store=store, lr=None, epochs=2,
                            fallback_lr=3e-3, clock=lambda: T0)
    assert meta["lr_source"] == "fallback" and meta["lr"] == 3e-3
    assert "RuntimeError" in meta["lr_info"]["reason"] and "kaboom" in meta["lr_info"]["reason"]
    assert meta["history"][0]["lr"] <= 3e-3 and len(meta["history"]) == 2  # trained on with the fallback
    assert not store.list("lr_cache")  # a fallback is not cached ...
    again = run(tmp_path / "b", store=store, lr=None, epochs=1, clock=lambda: T0)[2]
    assert again["lr_source"] == "finder" and again["lr_info"]["cache"] == "miss"  # ... so the next run sweeps


def test_finder_disabled_without_cache_entry_is_a_fallback(tmp_path, local_store):
    meta = run(tmp_path, store=local_store, lr=None, epochs=1, tc={"lr_finder": False})[2]
    assert meta["lr_source"] == "fallback" and "disabled" in meta["lr_info"]["reason"]


def test_fixed_lr_is_recorded_as_fixed(tmp_path):
    meta = run(tmp_path, lr=0.02, epochs=1)[2]
    assert meta["lr_source"] == "fixed" and meta["lr"] == 0.02


# ---------------------------------------------------------------- collapse
class SpikesOnce(MLP):
    """Training forward passes ``at`` return negated, scaled logits: two huge losses in a row, once."""

    def __init__(self, at=(5, 6)):
        super().__init__()
        self.at, self.calls = set(at), 0

    def forward(self, batch):
        out = super().forward(batch)
        if self.training:
            self.calls += 1
            if self.calls in self.at:
                return -100.0 * out
        return out


def test_reduce_lr_lowers_the_lr_and_training_goes_on(tmp_path):
    base = run(tmp_path / "base", model=SpikesOnce(at=()), epochs=3,
               tc={"collapse": CollapseConfig(action="reduce_lr")})[2]
    meta = run(tmp_path / "spiky", model=SpikesOnce(), epochs=3, tc={"collapse": CollapseConfig(action="reduce_lr")})[2]
    assert base["collapse_events"] == []
    (event,) = meta["collapse_events"]
    assert event["action"] == "reduce_lr" and event["step"] == 6 and event["epoch"] == 0
    assert event["lr_after"][0] == pytest.approx(0.1 * event["lr_before"][0])
    assert len(meta["history"]) == 3  # trained to the end
    for h, b in zip(meta["history"], base["history"]):
        assert h["lr"] == pytest.approx(0.1 * b["lr"])  # the schedule itself was lowered, not just one step
    assert math.isfinite(meta["history"][-1]["train_loss"])
    assert not (tmp_path / "spiky" / "collapse_report.json").exists()


def test_stop_action_writes_the_report_and_raises(tmp_path):
    from streamguard.errors import EXIT_COLLAPSE, CollapseError

    with pytest.raises(CollapseError) as err:
        run(tmp_path, model=SpikesOnce(), epochs=3)
    assert err.value.exit_code == EXIT_COLLAPSE
    report = strict_json(tmp_path / "collapse_report.json")
    assert report["step"] == 6 and report["action"] == "stop"
    assert "loss spike" in report["reason"] or "exploding gradient" in report["reason"]
    assert not (tmp_path / "metrics.json").exists()
