"""The engine's data-parallel glue: what a training run does differently on each of W ranks.

The model in ``DistributedDataParallel``, a check that every rank sees the same splits and checkpoint, each
rank's shard of a global batch with its loss normalisation, the all-reduced step loss, collapse flags every rank
acts on, and the run's description. The semantics are in the module docstring of ``streamguard.train.engine``;
the collectives in ``streamguard.train.distributed``. With one process (``Dist.enabled`` False) every function
here is the 1-process behaviour, so the engine runs one code path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from streamguard.errors import UserError
from streamguard.train.distributed import Dist
from streamguard.train.interface import move_to

if TYPE_CHECKING:
    from streamguard.train.engine import TrainJob

RANK_SEED_STRIDE = 1_000_003
"""Rank r of a distributed run seeds its RNG streams (dropout) with ``seed + r * RANK_SEED_STRIDE``."""


def wrap(module: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed. Buffers are synced once, not every step: no
    model here has running statistics (LayerNorm only), and evaluation runs on ``module`` itself."""
    if not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index,
                                       forward_sync_buffers=False)
    return DistributedDataParallel(module, forward_sync_buffers=False)


def check_ranks_agree(job: TrainJob, dist: Dist, train_labels: list[int], ckpt: dict[str, Any] | None) -> None:
    """Every rank must see the same splits and the same checkpoint (else the shards would not add up)."""
    if not dist.enabled:
        return
    mine = {"sizes": (len(job.train), len(job.valid), len(job.test)), "labels": hash(tuple(train_labels)),
            "lengths": hash(tuple(job.lengths)) if job.lengths is not None else None,
            "checkpoint": None if ckpt is None else (ckpt["epoch"], ckpt["pos"], ckpt["step"])}
    seen = dist.all_gather(mine)
    for rank, other in enumerate(seen):
        for key in mine:
            if other[key] != seen[0][key]:
                where = f"{job.store.uri}/{job.checkpoint_key}" if job.store else "the object store"
                raise UserError(
                    f"{job.family} seed {job.seed}: rank {rank} sees {key} {other[key]} but rank 0 sees "
                    f"{seen[0][key]}" + (f" at {where}: the ranks do not share one object store (a local "
                                         "directory store on several nodes?)" if key == "checkpoint" else
                                         ": the ranks read different data"))


def shard_batch(job: TrainJob, dist: Dist, device: torch.device, idx: list[int], class_weight: list[float],
                train_labels: list[int]) -> dict[str, Any]:
    """What this rank trains on of the global batch ``idx``: its collated shard, on the device, with the loss
    normalisation (``weight_sum``: the global batch's class-weight sum / W) and ``live`` (False: an empty
    shard stood in for by one item with weight 0, so DDP still gets this rank's gradients)."""
    if not dist.enabled:
        return {"batch": move_to(job.collate([job.train[i] for i in idx]), device), "weight_sum": None,
                "live": True}
    mine = dist.batch_shard(idx)
    total = sum(class_weight[train_labels[i]] for i in idx)
    return {"batch": move_to(job.collate([job.train[i] for i in (mine or idx[:1])]), device),
            "weight_sum": total / dist.world, "live": bool(mine)}


def global_loss(dist: Dist, loss: torch.Tensor, live: bool) -> torch.Tensor:
    """The loss of a :func:`shard_batch` as the engine steps on it. Distributed: its *value* is the global batch's
    loss (all-reduced, the same on every rank), its gradient this rank's part of it (DDP averages the parts);
    a stand-in shard (``live`` False) contributes nothing."""
    if not dist.enabled:
        return loss
    if not live:
        loss = loss * 0.0
    part = loss.detach()
    return loss + (dist.mean(part) - part)


def agree(dist: Dist, reason: str | None, step: int | None) -> str | None:
    """A collapse flag every rank acts on: raised on any rank, raised on all (the inputs are all-reduced,
    so the ranks agree anyway; this keeps one rank from stopping while the others wait for it)."""
    if not dist.enabled or not dist.any(reason is not None):
        return reason
    return reason or f"collapse detected on another rank (step {step})"


def describe(dist: Dist, batch_size: int) -> dict[str, Any] | None:
    """World size, backend and per-rank batch of a distributed run (``TrainResult.distributed``); None in one
    process."""
    if not dist.enabled:
        return None
    return {"world_size": dist.world, "backend": dist.backend, "global_batch_size": batch_size,
            "per_rank_batch_size": [len(range(r, batch_size, dist.world)) for r in range(dist.world)]}
