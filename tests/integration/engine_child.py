"""A training run in its own process, for the kill-and-resume test.

Usage: python engine_child.py STORE OUT_DIR [SLEEP_PER_STEP]
Trains a small dropout MLP through the real engine with checkpoints in STORE and
writes OUT_DIR/metrics.json etc.
"""

import sys
import time
from pathlib import Path

import torch
from torch import nn

from streamguard.config import OptimConfig, TrainConfig
from streamguard.storage import open_store
from streamguard.train.engine import TrainJob, fit, write_outputs


class MLP(nn.Module):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))

    def forward(self, batch):
        if self.training and self.delay:
            time.sleep(self.delay)
        return self.net(batch["x"])


def make_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g)) > 0).long()
    return [{"x": x[i], "labels": int(y[i])} for i in range(n)]


def collate(items):
    return {"x": torch.stack([it["x"] for it in items]), "labels": torch.tensor([it["labels"] for it in items])}


def main(store_uri: str, out_dir: str, delay: float = 0.0) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    job = TrainJob(
        family="mlp", model=MLP(delay), train=make_data(320, 1), valid=make_data(80, 2), test=make_data(80, 3),
        collate=collate, labels=lambda ds: [it["labels"] for it in ds],
        opt=OptimConfig(epochs=4, batch_size=16, lr=None, fallback_lr=0.01, patience=10),
        train_cfg=TrainConfig(checkpoint_every_steps=3, lr_finder_steps=30), seed=11, out_dir=Path(out_dir),
        store=open_store(store_uri), checkpoint_key="checkpoints/test/mlp/last.pt", lr_key_parts={"data": "toy"})
    result = fit(job)
    write_outputs(job, result, out_dir)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
