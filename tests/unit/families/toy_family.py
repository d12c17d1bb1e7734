"""A fourth model family in one file: an MLP over each function's byte histogram.

It is what a new family costs: this file (the ``Family`` protocol, no base
class) plus one registry entry (the test adds it with ``monkeypatch.setitem``).
Training, checkpoints, the LR decision, outputs, the CLI command, the probes and
bundles (predict, evaluate, scan) come from the shared code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamguard.config import OptimConfig
from streamguard.data.samples import SPLITS, read_split
from streamguard.families.base import Datasets, Featurised, Input, Predictor, chunks, read_card

FEATURES = 64


def featurize(func: str) -> torch.Tensor:
    """Share of each byte value (mod ``FEATURES``) in the source text."""
    b = torch.tensor(list(func.encode()) or [0]) % FEATURES
    return torch.bincount(b, minlength=FEATURES).float() / len(b)


class ByteMLP(nn.Module):
    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["x"] * FEATURES)


def collate(items: list[dict]) -> dict:
    return {"x": torch.stack([it["x"] for it in items]), "labels": torch.tensor([it["labels"] for it in items])}


def items_of(samples) -> list[dict]:
    return [{"x": featurize(s.func), "labels": s.target} for s in samples]


def _model(seed: int) -> ByteMLP:
    torch.manual_seed(seed)
    return ByteMLP()


class ToyFamily:
    name = "toy"
    inputs: tuple[Input, ...] = ()
    requires: tuple[str, ...] = ()
    memory_probe = False
    initial_candidate = False

    def __init__(self):
        self.opt = OptimConfig(epochs=3, batch_size=16, lr=0.01, patience=5)

    def optim_config(self, cfg):
        return self.opt

    def datasets(self, run) -> Datasets:
        splits = {s: read_split(run.data_dir, s) for s in SPLITS}
        data = {s: items_of(v) for s, v in splits.items()}
        return Datasets(train=data["train"], valid=data["valid"], test=data["test"],
                        test_ids=[s.id for s in splits["test"]], test_pair_ids=[s.pair_id for s in splits["test"]],
                        metadata={"features": FEATURES})

    def build(self, run, data):
        return _model(run.seed)

    def collate(self, data):
        return collate

    def labels(self, items) -> list[int]:
        return [it["labels"] for it in items]

    def lr_key_parts(self, run, model) -> dict:
        return {"model": "byte-mlp", "features": FEATURES}

    def save(self, run, model, data, model_dir: Path) -> None:
        torch.save(model.cpu().state_dict(), model_dir / "model.pt")

    def card_extra(self, run) -> dict:
        return {"features": FEATURES}

    def load(self, model_dir):
        model = ByteMLP()
        model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
        return model.eval()

    def views(self, ctx, split):
        from streamguard.data.views import View, digest

        samples = ctx.samples(split)
        return View("toy", [digest(featurize(s.func).numpy().tobytes()) for s in samples], [False] * len(samples),
                    None, "byte histogram")

    def predictor(self, model_dir, requires) -> Predictor:
        return Predictor(self.name, self.load(model_dir), lambda fns: Featurised(items_of(fns.samples), collate),
                         read_card(model_dir), {"features": FEATURES})

    def smoke_batches(self, ctx, indices, batch_size):
        items = items_of([ctx.train_samples()[i] for i in indices])
        return _model(ctx.seed), [collate(c) for c in chunks(items, batch_size)]

    def memory_batch(self, ctx, batch_size):
        items = items_of(ctx.train_samples()[:batch_size])
        return _model(ctx.seed), collate(items), {"batch_items": len(items)}


FAMILY = ToyFamily()
