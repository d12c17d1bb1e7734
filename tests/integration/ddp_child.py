"""The engine on a small MLP, in one process or under torchrun (one process per rank), for the DDP tests.

Usage: python ddp_child.py OUT STORE N_TRAIN LR [DROPOUT [KILL_AT]]
       python -m torch.distributed.run --standalone --nproc-per-node 2 ddp_child.py OUT STORE N_TRAIN LR ...

``LR``: a number (fixed), ``finder`` (the LR finder, cached in STORE) or ``collapse`` (an LR that blows
training up: exit 3). N_TRAIN with a remainder modulo the batch (16) makes short last batches, down to a
single item (the other rank's shard is then empty). KILL_AT > 0: rank 1 SIGKILLs itself at its KILL_AT-th
training forward pass (mid-epoch, after rank 0 has written a checkpoint). Rank 0 writes OUT/result.json:
the test probabilities, the final weights (as lists), the history and the LR decision.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from streamguard.config import CollapseConfig, OptimConfig, TrainConfig
from streamguard.errors import StreamGuardError
from streamguard.stage import setup_logging
from streamguard.storage import open_store
from streamguard.train import distributed
from streamguard.train.engine import TrainJob, fit


class MLP(nn.Module):
    def __init__(self, dropout: float, kill_at: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 2))
        self.kill_at, self.steps = kill_at, 0

    def forward(self, batch):
        if self.training:
            self.steps += 1
            if self.kill_at and self.steps == self.kill_at and distributed.context().rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(batch["x"])


def make_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g)) > 0.4).long()  # unbalanced: class weights
    return [{"x": x[i], "labels": int(y[i])} for i in range(n)]


def collate(items):
    return {"x": torch.stack([it["x"] for it in items]), "labels": torch.tensor([it["labels"] for it in items])}


def main(out: str, store_uri: str, n_train: int, lr: str, dropout: float = 0.0, kill_at: int = 0) -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fixed = None if lr in ("finder", "collapse") else float(lr)
    job = TrainJob(
        family="mlp", model=MLP(dropout, kill_at), train=make_data(n_train, 1), valid=make_data(37, 2),
        test=make_data(41, 3),
        collate=collate, labels=lambda ds: [it["labels"] for it in ds],
        opt=OptimConfig(epochs=3, batch_size=16, lr=1e4 if lr == "collapse" else fixed, fallback_lr=0.01,
                        patience=10),
        train_cfg=TrainConfig(checkpoint_every_steps=3, lr_finder_steps=30,
                              collapse=CollapseConfig(single_class_is_collapse=False)),
        seed=11, out_dir=Path(out), store=open_store(store_uri), checkpoint_key="checkpoints/ddp/mlp/last.pt",
        lr_key_parts={"data": "toy"})
    try:
        result = fit(job)
    except StreamGuardError as e:
        print(f"streamguard: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    if distributed.context().is_main:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "result.json").write_text(json.dumps({
            "test_probs": result.test_probs, "threshold": result.threshold, "history": result.history,
            "lr_info": {k: result.lr_info.get(k) for k in ("lr", "lr_source", "finder")},
            "weights": {k: v.tolist() for k, v in job.model.state_dict().items()},
            "distributed": result.distributed}))
    distributed.context().barrier()
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    setup_logging()
    a = sys.argv[1:]
    sys.exit(main(a[0], a[1], int(a[2]), a[3], float(a[4]) if len(a) > 4 else 0.0, int(a[5]) if len(a) > 5 else 0))
