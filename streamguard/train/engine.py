"""The training engine: one loop for the transformer, the GNN and the fusion model.

``fit(job)`` trains ``job.model`` on ``job.train`` with:

* AMP (bf16 on CUDA where supported, else fp16 + GradScaler; off on CPU) and
  gradient clipping after ``scaler.unscale_`` (``step.train_step``, the one
  training step, which the LR finder uses too, with the same scaler and clip);
* class weights from the training labels; early stopping on validation F1 (an epoch
  improves when it beats the best so far by more than ``min_delta``); the
  decision threshold tuned on validation (max F1) and applied unchanged to test;
  the best weights are what is returned and exported (with ``initial_candidate``, the
  untrained model competes too, as epoch -1);
* the LR from a fixed value, the LR cache, the LR finder or the fallback
  (``lr_cache.resolve_lr``), recorded as ``lr_source``;
* collapse detection (NaN/Inf, exploding gradients, loss spikes, one predicted
  class, vanishing output variance) with ``stop`` (``collapse_report.json``,
  exit code 3) or ``reduce_lr``;
* checkpoints to the object store every N steps and every epoch; a job that
  finds its checkpoint resumes from it, and on CPU with deterministic settings a
  killed-and-resumed run ends with exactly the metrics of an uninterrupted one;
* data parallelism when started by ``torchrun`` (``WORLD_SIZE`` > 1; see
  ``train.distributed``): one process per device, the model in
  ``DistributedDataParallel``, the same loop.

Distributed semantics (``WORLD_SIZE`` = W > 1). ``batch_size`` is the *global*
batch: ``epoch_batches`` is the batch order of every rank, rank r trains on items
r, r + W, ... of each batch, and each shard's loss is divided by the global
batch's class-weight sum / W, so DDP's mean of the ranks' gradients is exactly the
1-process gradient of that batch (up to float summation order): a W-process run
takes the 1-process run's optimizer steps, and ``state.pos`` counts global
batches, so a checkpoint resumes mid-epoch at the same batch with any W. A rank
whose shard of the (short, last) batch is empty trains on one item with weight 0.
The step loss is all-reduced (every rank logs, monitors and records the global
loss); a collapse flag is agreed by all-reduce, so every rank acts on it at the
same step. Validation and test: each rank predicts a contiguous shard of the
split with the unwrapped model, the shards are gathered in rank order (the whole
split once, no padding), and every rank computes the same metrics from them.
The LR: rank 0 alone reads and writes the LR cache; when the finder has to run,
rank 0 tells the others and all ranks sweep in lockstep on their shards of the
finder's global batches (the sweep's loss is the all-reduced one, so every rank
stops at the same step; memory per device as in training), then rank 0's LR
decision is broadcast. Checkpoints: written by rank 0 (model, optimizer, ...,
and every rank's RNG state, so a resumed run with the same W continues every
rank's dropout stream); every rank reads the checkpoint at start and the ranks
check they found the same one. Dropout draws differ from a 1-process run
(each rank draws masks for its own shard from its own stream, seeded
``seed + rank * RANK_SEED_STRIDE``; rank 0's is the 1-process stream), so
W-process and 1-process runs agree to float noise only without dropout.

Batch order is a pure function of (seed, epoch), so resuming at a position
inside an epoch replays the same batches. The run's progress is a typed
:class:`~streamguard.train.state.TrainState`, stored in the checkpoint under its
field names. ``fit`` reads top-down: set-up (``_Run.__init__``: device, AMP, LR
decision, optimizer, resume), ``train_epoch``, ``end_epoch`` (validation, best
weights, early stopping), ``finish`` (export checks, test predictions). Pieces in
modules of their own: ``train.schedule`` (seeding, batch order, LR schedule),
``train.sharding`` (the data-parallel glue above), ``train.outputs`` (the files a
finished run writes, :func:`write_outputs`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from streamguard.config import OptimConfig, TrainConfig
from streamguard.errors import CollapseError
from streamguard.eval.metrics import compute_metrics, tune_threshold
from streamguard.storage import ObjectStore
from streamguard.train import amp as amp_mod
from streamguard.train import distributed, sharding
from streamguard.train.checkpoint import CheckpointWriter, load_checkpoint, rng_state, set_rng_state
from streamguard.train.collapse import CollapseMonitor, handle_collapse
from streamguard.train.device import cuda_required, resolve_device
from streamguard.train.interface import class_weights_from_labels, loss_fn, move_to
from streamguard.train.lr_cache import LRCache, resolve_lr
from streamguard.train.lr_finder import find_lr
from streamguard.train.outputs import write_outputs
from streamguard.train.schedule import epoch_batches, linear_schedule, seed_everything
from streamguard.train.sharding import RANK_SEED_STRIDE
from streamguard.train.state import TrainState
from streamguard.train.step import make_optimizer, train_step

__all__ = ["RANK_SEED_STRIDE", "TrainJob", "TrainResult", "epoch_batches", "fit", "predict", "seed_everything",
           "write_outputs"]

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """What one training run needs; the engine knows nothing else about the model."""

    family: str  # transformer | gnn | fusion
    model: nn.Module
    train: Sequence
    valid: Sequence
    test: Sequence
    collate: Callable[[list], dict]
    labels: Callable[[Sequence], list[int]]
    opt: OptimConfig
    train_cfg: TrainConfig
    seed: int
    out_dir: Path
    store: ObjectStore | None = None
    checkpoint_key: str | None = None
    lr_key_parts: dict[str, Any] = field(default_factory=dict)
    test_ids: list[str] = field(default_factory=list)
    test_pair_ids: list[str | None] = field(default_factory=list)
    """pair_id of each test item (vulnerable/fixed pairs), written to predictions.jsonl for pair metrics."""
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    lengths: Sequence[int] | None = None
    """Per-item sizes of ``train`` (token counts ...): batches are bucketed by them."""
    clock: Callable[[], float] = time.time
    """Wall clock of the LR cache (entry age vs. TTL); tests inject a fake one."""
    initial_candidate: bool = False
    """Validate the model before the first epoch too (history epoch -1) and export it unless an epoch beats its
    validation F1: for a model that starts as a good answer (the fusion starts as its better branch)."""


@dataclass
class TrainResult:
    threshold: float
    best_epoch: int
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    test_labels: list[int]
    test_probs: list[float]
    history: list[dict[str, Any]]
    lr_info: dict[str, Any]
    resumed_from: dict[str, Any] | None
    seconds: float
    collapse_events: list[dict[str, Any]] = field(default_factory=list)
    """``reduce_lr`` actions taken (reason, step, epoch, lr before/after)."""
    distributed: dict[str, Any] | None = None
    """World size, backend and per-rank batch of a distributed run; None in one process."""


@torch.no_grad()
def predict(model: nn.Module, data: Sequence, collate: Callable, batch_size: int, device: torch.device,
            amp_ctx: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Vulnerable-class probabilities and logits for every item of ``data``, in order."""
    model.eval()
    probs, logits_all = [], []
    for i in range(0, len(data), batch_size):
        batch = move_to(collate([data[j] for j in range(i, min(i + batch_size, len(data)))]), device)
        with amp_mod.autocast(amp_ctx):
            logits = model(batch).float()
        logits_all.append(logits.cpu())
        probs.append(torch.softmax(logits, dim=-1)[:, 1].cpu())
    if not probs:
        return np.zeros(0), np.zeros((0, 2))
    return torch.cat(probs).numpy(), torch.cat(logits_all).numpy()


class _Run:
    """One call of :func:`fit`: set-up (device, AMP, LR, optimizer, resume), then epochs, then the export."""

    def __init__(self, job: TrainJob):
        self.job, self.t0 = job, time.time()
        cfg, tc = job.opt, job.train_cfg
        self.dist = distributed.context(tc.dist_timeout_s)
        if tc.num_threads > 0:
            torch.set_num_threads(tc.num_threads)
        self.seed_streams()
        device = self.dist.device or resolve_device(require_cuda=cuda_required())
        self.device = device
        self.module = job.model.to(device)
        """The model itself: what is evaluated, checkpointed and exported."""
        self.model = sharding.wrap(self.module, self.dist, device)
        """What trains: ``module``, or ``module`` in DistributedDataParallel."""
        self.amp_ctx = amp_mod.make_amp(device, tc.amp)
        self.train_labels = list(job.labels(job.train))
        self.weights = class_weights_from_labels(self.train_labels).to(device)
        self.class_weight = [float(w) for w in self.weights.cpu()]
        self.scaler = amp_mod.make_scaler(self.amp_ctx)
        ckpt = load_checkpoint(job.store, job.checkpoint_key) if job.store and job.checkpoint_key else None
        sharding.check_ranks_agree(job, self.dist, self.train_labels, ckpt)
        self.lr_info = self._resolve_lr(ckpt)
        lr = float(self.lr_info["lr"])
        log.info("%s seed %d: lr %.3g (%s)", job.family, job.seed, lr, self.lr_info["lr_source"])

        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, lr, cfg.weight_decay)
        n_batches = math.ceil(len(job.train) / cfg.batch_size)
        self.scheduler = linear_schedule(self.optimizer, max(1, cfg.epochs * n_batches))
        self.monitor = CollapseMonitor(tc.collapse)
        self.state = TrainState()
        self.resumed_from = self._restore(ckpt) if ckpt is not None else None
        self.writer = (CheckpointWriter(job.store, job.checkpoint_key)
                       if job.store and job.checkpoint_key and self.dist.is_main else None)

    # ------------------------------------------------------------ set-up
    def seed_streams(self, offset: int = 0) -> None:
        """Seed the RNG streams: ``seed`` (+ ``offset``), each rank its own (rank 0's is the 1-process stream)."""
        seed_everything(self.job.seed + offset + RANK_SEED_STRIDE * self.dist.rank, self.job.train_cfg.deterministic)

    def shard_batch(self, idx: list[int]) -> dict[str, Any]:
        """This rank's shard of the global batch ``idx`` (``sharding.shard_batch``)."""
        return sharding.shard_batch(self.job, self.dist, self.device, idx, self.class_weight, self.train_labels)

    def batch_loss(self, model: nn.Module, shard: dict[str, Any]):
        """(loss, logits) of a :meth:`shard_batch`. Distributed: the loss's *value* is the global batch's loss
        (all-reduced, the same on every rank), its gradient this rank's part of it (DDP averages the parts)."""
        with amp_mod.autocast(self.amp_ctx):
            loss, logits = loss_fn(model, shard["batch"], self.weights, weight_sum=shard["weight_sum"])
        return sharding.global_loss(self.dist, loss, shard["live"]), logits

    def _resolve_lr(self, ckpt: dict[str, Any] | None) -> dict[str, Any]:
        """The checkpoint's LR decision on resume; else fixed, cache, LR finder or fallback (``resolve_lr``).

        Distributed: rank 0 decides (it alone reads and writes the cache); when it needs the finder it says
        so first and every rank sweeps in lockstep; then its decision is broadcast."""
        job, cfg, tc, d = self.job, self.job.opt, self.job.train_cfg, self.dist
        if ckpt is not None:
            log.info("%s seed %d: resuming from checkpoint %s (epoch %d, step %d)", job.family, job.seed,
                     job.checkpoint_key, ckpt["epoch"], ckpt["step"])
            return ckpt["lr_info"]
        if d.is_main:
            def finder():
                d.broadcast("finder")  # the other ranks join the sweep
                return self._run_finder()

            cache = LRCache(job.store, ttl_hours=tc.lr_cache_ttl_hours, clock=job.clock) if job.store else None
            lr_info = d.broadcast(resolve_lr(cfg, tc, cache, {"family": job.family, **job.lr_key_parts,
                                                               "batch_size": cfg.batch_size}, finder))
        else:
            lr_info = d.broadcast(None)
            if lr_info == "finder":
                self._run_finder()
                lr_info = d.broadcast(None)
        self.seed_streams()  # the finder must not shift the training RNG stream
        return lr_info

    def _finder_batches(self):
        job = self.job
        for epoch in range(10**6):
            for idx in epoch_batches(len(job.train), job.opt.batch_size, job.seed + 1, epoch):
                yield self.shard_batch(idx)

    def _run_finder(self):
        """The LR sweep with the training step of this run: its optimizer, loss, grad scaler and clip.

        The sweep runs from a decade below ``lr_min`` (the first points, where the loss average settles, are
        skipped) to two decades above ``lr_max`` (where the loss turns up), so its steps are spent around the
        range the suggestion is clamped to."""
        cfg, tc = self.job.opt, self.job.train_cfg
        return find_lr(self.model, lambda p, lr: make_optimizer(p, lr, cfg.weight_decay), self._finder_batches,
                       loss=self.batch_loss, steps=tc.lr_finder_steps, lr_range=(cfg.lr_min, cfg.lr_max),
                       start_lr=cfg.lr_min / 10, end_lr=cfg.lr_max * 100, suggest=tc.lr_finder_rule,
                       fallback_lr=cfg.fallback_lr, device=self.device, scaler=self.scaler, max_norm=cfg.grad_clip)

    def _restore(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """Model, optimizer, scheduler, scaler, state and RNG streams from ``ckpt``; where the run resumes.

        Each rank takes its own RNG state back when the checkpoint holds one per rank for this world size;
        otherwise (another world size) rank 0 takes the saved one and the others reseed from the step."""
        self.module.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState.from_checkpoint(ckpt)
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) == self.dist.world:
            set_rng_state(ranks[self.dist.rank])
        else:
            if self.dist.is_main:
                log.warning("%s seed %d: checkpoint of a %d-process run resumed with %d processes: same batches, "
                            "other dropout streams", self.job.family, self.job.seed, len(ranks), self.dist.world)
            set_rng_state(ckpt["rng"])
            if not self.dist.is_main:
                self.seed_streams(offset=int(ckpt["step"]))
        return {"epoch": ckpt["epoch"], "pos": ckpt["pos"], "step": ckpt["step"]}

    # ------------------------------------------------------------ during training
    def checkpoint(self) -> None:
        """Rank 0 saves (in the background); distributed, every rank takes part (its RNG state goes in)."""
        job = self.job
        ranks = self.dist.all_gather(rng_state()) if self.dist.enabled and job.store and job.checkpoint_key else None
        if self.writer is not None:
            self.writer.save({
                **self.state.to_checkpoint(), "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "lr_info": self.lr_info, "family": job.family, "seed": job.seed,
                **({"rng_ranks": ranks} if ranks else {})})

    def agree(self, reason: str | None, step: int | None) -> str | None:
        """A collapse flag every rank acts on (``sharding.agree``)."""
        return sharding.agree(self.dist, reason, step)

    def collapse(self, reason: str, epoch: int, action: str) -> None:
        job, tc, state = self.job, self.job.train_cfg, self.state
        if action == "stop" and self.writer is not None:
            self.writer.close()  # leave the last good checkpoint complete before stopping
        try:
            event = handle_collapse(reason, action, self.optimizer,
                                    report_path=job.out_dir / "collapse_report.json" if self.dist.is_main else None,
                                    lr_factor=tc.collapse.lr_factor, min_lr=tc.collapse.min_lr,
                                    scheduler=self.scheduler, step=state.step, epoch=epoch,
                                    history=state.history[-5:] + self.monitor.recent(), family=job.family,
                                    seed=job.seed)
        except CollapseError:
            self.dist.barrier()  # rank 0's report is written before any rank exits
            raise
        state.collapse_events.append(event)

    def predict(self, data: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and logits of every item of ``data``, in order; distributed, each rank predicts a
        contiguous shard (in batches of 2 x batch_size / W) and the shards are gathered."""
        job, d, size = self.job, self.dist, self.job.opt.batch_size * 2
        if not d.enabled:
            return predict(self.module, data, job.collate, size, self.device, self.amp_ctx)
        parts = d.gather_shards(lambda part: predict(self.module, [data[i] for i in part], job.collate,
                                                     max(1, size // d.world), self.device, self.amp_ctx), len(data))
        if not parts:
            return np.zeros(0), np.zeros((0, 2))
        return np.concatenate([p for p, _ in parts]), np.concatenate([lg for _, lg in parts])

    def train_epoch(self) -> list[float]:
        """The rest of the current epoch from ``state.pos``, checkpointing every N steps; the step losses."""
        job, cfg, tc, state = self.job, self.job.opt, self.job.train_cfg, self.state
        epoch = state.epoch
        self.model.train()
        batches = epoch_batches(len(job.train), cfg.batch_size, job.seed, epoch, job.lengths)
        losses: list[float] = []
        bar = tqdm(range(state.pos, len(batches)), desc=f"{job.family} s{job.seed} e{epoch}", leave=False,
                   disable=None, mininterval=2.0)
        for pos in bar:
            shard = self.shard_batch(batches[pos])
            self.optimizer.zero_grad(set_to_none=True)
            loss, _ = self.batch_loss(self.model, shard)
            grad_norm = train_step(loss, self.optimizer, self.scaler, self.params, cfg.grad_clip)
            self.scheduler.step()
            state.step += 1
            state.pos = pos + 1
            lv = float(loss.detach())
            losses.append(lv)
            reason = self.agree(self.monitor.on_step(state.step, lv, float(grad_norm)), state.step)
            if reason:
                self.collapse(reason, epoch, tc.collapse.action)
            # The last step of an epoch is covered by the epoch checkpoint written right after validation.
            if tc.checkpoint_every_steps and state.step % tc.checkpoint_every_steps == 0 and pos + 1 < len(batches):
                self.checkpoint()
        return losses

    def validate(self, epoch: int, losses: list[float] | None) -> bool:
        """Tune the threshold on validation, record the epoch, keep the weights when best; True when they were."""
        job, state = self.job, self.state
        probs, _ = self.predict(job.valid)
        yv = job.labels(job.valid)
        thr = tune_threshold(yv, probs)
        vm = compute_metrics(yv, probs, thr)
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None,
               "valid_f1": vm["f1"], "valid_roc_auc": vm["roc_auc"], "threshold": thr,
               "lr": self.scheduler.get_last_lr()[0], "step": state.step}
        state.history.append(rec)
        log.info("%s seed %d epoch %d: loss %.4f valid F1 %.4f", job.family, job.seed, epoch,
                 rec["train_loss"] or float("nan"), vm["f1"])
        if vm["f1"] > state.best_f1 + job.opt.min_delta:
            state.best_f1, state.best_epoch, state.best_threshold = vm["f1"], epoch, thr
            state.best_state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
            return True
        return False

    def end_epoch(self, losses: list[float]) -> None:
        """Validate: tune the threshold, keep the best weights, count towards early stopping; checkpoint."""
        job, state = self.job, self.state
        epoch = state.epoch
        if self.validate(epoch, losses):
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.epoch, state.pos = epoch + 1, 0
        if state.bad_epochs >= job.opt.patience:
            log.info("%s seed %d: early stop after epoch %d (best %d)", job.family, job.seed, epoch, state.best_epoch)
            state.done = True
        self.checkpoint()

    # ------------------------------------------------------------ the export
    def finish(self) -> TrainResult:
        """Best weights back, output-collapse check on validation, test predictions, final checkpoint."""
        job, tc, state = self.job, self.job.train_cfg, self.state
        if state.best_state is not None:
            self.module.load_state_dict(state.best_state)
        thr = float(state.best_threshold)
        vprobs, vlogits = self.predict(job.valid)
        # Output collapse of the exported model: non-finite or constant outputs always;
        # one predicted class (argmax) only when the model also ranks no better than
        # chance — a weak but honest model can sit on one side of the decision boundary.
        yv = job.labels(job.valid)
        vm = compute_metrics(yv, vprobs, thr)
        reason = self.agree(self.monitor.on_eval(vlogits, vlogits.argmax(axis=1) if len(vlogits) else None), None)
        if reason and reason.startswith("single predicted class") and (not tc.collapse.single_class_is_collapse
                                                                       or not vm["roc_auc"] <= 0.55):
            log.warning("%s seed %d: %s, but valid ROC-AUC is %.3f: not treated as collapse", job.family, job.seed,
                        reason, vm["roc_auc"])
        elif reason:
            self.collapse(reason, state.epoch, "stop")
        tprobs, _ = self.predict(job.test)
        yt = job.labels(job.test)
        state.done = True
        self.checkpoint()
        if self.writer is not None:
            self.writer.close()  # the final checkpoint is on disk before the stage reports success
        return TrainResult(threshold=thr, best_epoch=int(state.best_epoch), valid_metrics=vm,
                           test_metrics=compute_metrics(yt, tprobs, thr), test_labels=list(map(int, yt)),
                           test_probs=[float(p) for p in tprobs], history=state.history, lr_info=self.lr_info,
                           resumed_from=self.resumed_from, seconds=time.time() - self.t0,
                           collapse_events=list(state.collapse_events),
                           distributed=self.describe_distributed())

    def describe_distributed(self) -> dict[str, Any] | None:
        return sharding.describe(self.dist, self.job.opt.batch_size)


def fit(job: TrainJob) -> TrainResult:
    """Train ``job.model`` (resuming from ``job.checkpoint_key`` when a checkpoint is there); see the module doc."""
    run = _Run(job)
    if job.initial_candidate and run.resumed_from is None:
        run.validate(-1, None)  # the untrained model: kept unless an epoch beats it (TrainJob.initial_candidate)
    while not run.state.done and run.state.epoch < job.opt.epochs:
        run.end_epoch(run.train_epoch())
    return run.finish()

