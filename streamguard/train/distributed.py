"""Data-parallel training across processes: what the engine needs from ``torch.distributed``.

One process per device, started by ``torchrun`` (in a pod) or by a Kubeflow Trainer ``TrainJob`` (torchrun on
every node), reading the standard environment: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``. :func:`context` returns this process's :class:`Dist`; with ``WORLD_SIZE`` > 1 its first call
joins the process group (``env://``): NCCL on CUDA (device ``cuda:LOCAL_RANK``), gloo on the CPU, with a
timeout (``train.dist_timeout_s``) on the rendezvous and on every collective, so a rank whose peer never
arrives or stops answering fails instead of waiting for ever (a rendezvous that does not happen is one line
and exit 6; a rank that *dies* is noticed sooner: torchrun stops the others). Without ``WORLD_SIZE`` > 1 the
context is a single process and every method is a no-op, so the engine runs one code path.

What the engine does with it (``streamguard.train.engine``, its glue in ``streamguard.train.sharding``):

* batches: ``epoch_batches`` stays the *global* batch order (a pure function of seed and epoch); rank ``r``
  trains on items ``r, r + W, r + 2W, ...`` of each global batch (:meth:`Dist.batch_shard`), the loss of
  each shard is normalised by the global batch's class-weight sum, so the mean-reduced DDP gradient is
  the 1-process gradient of the same batch (up to float summation order);
* evaluation: each rank predicts a contiguous shard of a split (:meth:`Dist.shard`), the shards are
  gathered in rank order (:meth:`Dist.gather_shards`): the full split, in order, without padding;
* rank 0 writes (checkpoints, LR cache, outputs), :meth:`Dist.barrier` holds the others;
* decisions every rank must take together are made from all-reduced values (:meth:`Dist.mean`,
  :meth:`Dist.any`) or broadcast from rank 0 (:meth:`Dist.broadcast`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from streamguard.errors import DistributedError, UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0
"""``train.dist_timeout_s``'s default (torch's own default for gloo)."""


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise UserError(f"${name}: not set, but WORLD_SIZE={os.environ.get('WORLD_SIZE')} asks for distributed "
                            "training (start it with torchrun, which sets RANK, LOCAL_RANK and WORLD_SIZE)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"${name}={raw!r}: not an integer") from None


@dataclass
class Dist:
    """This process's place in the job; a single process (``world == 1``) when not distributed."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    """The device of this rank (``cuda:LOCAL_RANK`` or ``cpu``); None when not distributed (the engine picks)."""
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world, "rank": self.rank, "backend": self.backend}

    # ------------------------------------------------------------ collectives (no-ops in one process)
    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (what the others pass is ignored)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over the ranks (a new tensor; the same bits on every rank)."""
        if not self.enabled:
            return t
        import torch.distributed as dist

        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        if not self.enabled:
            return bool(flag)
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    # ------------------------------------------------------------ who does which part
    def batch_shard(self, batch: list[int]) -> list[int]:
        """This rank's items of one global batch: every ``world``-th from position ``rank`` (bucketed batches
        are sorted by length, so the ranks get items of about the same length); may be empty."""
        return batch[self.rank::self.world] if self.enabled else batch

    def shard(self, n: int, align: int = 1) -> range:
        """This rank's contiguous part of ``range(n)``; boundaries fall on multiples of ``align`` (whole chunks,
        spread as evenly as they go; a rank may get none)."""
        if not self.enabled:
            return range(n)
        align = max(1, int(align))
        chunks = -(-n // align)
        lo_c, hi_c = (chunks * self.rank) // self.world, (chunks * (self.rank + 1)) // self.world
        return range(min(n, lo_c * align), min(n, hi_c * align))

    def gather_shards(self, fn: Callable[[range], T], n: int, align: int = 1) -> list[T]:
        """``fn`` of this rank's :meth:`shard`, gathered from all ranks in rank order (ranks with an empty shard
        left out): concatenated, the results cover ``range(n)`` once, in order."""
        part = self.shard(n, align)
        mine = fn(part) if len(part) else None
        return [r for r in self.all_gather(mine) if r is not None]


_CTX: Dist | None = None


def launched_rank() -> int | None:
    """This process's ``RANK`` when it was launched as one of several (``WORLD_SIZE`` > 1), else None; reads
    the environment only (no process group, no torch import)."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    except ValueError:
        return None


def context(timeout_s: float | None = None) -> Dist:
    """This process's :class:`Dist`; the first call with ``WORLD_SIZE`` > 1 joins the process group
    (``timeout_s``: rendezvous and collective timeout, default :data:`DEFAULT_TIMEOUT_S`)."""
    global _CTX
    if _CTX is None:
        _CTX = _init(DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s))
    return _CTX


def _init(timeout_s: float) -> Dist:
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    from streamguard.train.device import cuda_required, resolve_device

    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise UserError(f"$RANK={rank}: outside 0..{world - 1} (WORLD_SIZE={world})")
    device = resolve_device(require_cuda=cuda_required(), index=local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if timeout_s <= 0:
            raise UserError(f"train.dist_timeout_s={timeout_s:g}: must be > 0")
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                    device_id=device if device.type == "cuda" else None)
        except RuntimeError as e:  # torch.distributed.DistError and the like: a rendezvous that did not happen
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            raise DistributedError(f"distributed: rank {rank} of {world} could not join the process group at {where} "
                                   f"within train.dist_timeout_s={timeout_s:g} s: {str(e).splitlines()[0]}") from None
    log.info("distributed: rank %d of %d (local rank %d) on %s, %s, timeout %.0f s", rank, world, local_rank, device,
             backend, timeout_s)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, backend=backend)


def shutdown() -> None:
    """Leave the process group (when this process joined one); the next :func:`context` starts afresh."""
    global _CTX
    if _CTX is not None and _CTX.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CTX = None
