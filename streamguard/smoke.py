"""Per-family probes on the real models and data: tiny overfit and single-batch memory.

Both ask the family (``streamguard.families``: its ``smoke_batches`` and
``memory_batch``) for its model, built the way training builds it (the fusion
head over the two encoders' embeddings, ``families.fusion.encoder_features``),
and batches, and hand them to the generic probes in :mod:`streamguard.train.probes`:

* ``smoke_test(family, ...)``: 32 training samples in batches of the configured
  size, 50 steps at the family's configured learning rate (its ``fallback_lr``
  when none is fixed; then 3x and 10x that when it does not pass, see
  ``smoke_test``); passes when the final loss is below 0.5 and at least 70 %
  below the first (``probes.tiny_overfit``, which measures the loss against the
  batches' labels itself, so a training loss that ignores the labels fails). The
  probe tests the loop, not the data: :func:`probe_indices` draws samples that are
  distinct in the family's own view (``Family.views``: the token ids after
  windowing, the graph after the node cap, both for the fusion), at most one side
  of a vulnerable/fixed pair, both classes in turn, the cheapest first (fewest
  windows / nodes) -- so real paired data, where the two sides of a pair may be
  the same input with opposite labels, does not fail a working loop. The batches'
  labels must be the drawn samples' targets. A family that cannot overfit these
  samples has a bug in the model, its inputs, its labels or the loop. For ``fusion`` the two fresh encoders embed
  the samples and the features are standardised per dimension (see
  ``FusionFamily.smoke_batches``) before the head is trained.
* ``memory_check(family, ...)``: forward + backward of one batch at the
  configured batch size made of the *largest* training items -- the longest
  token sequences padded to ``transformer.max_length``, the graphs with the most
  nodes -- under the configured AMP, plus the optimizer state; fails above
  ``limit_share`` (90 %) of the device memory (CUDA) or of the usable RAM (CPU,
  peak RSS) (``probes.memory_test``).

Building a family costs seconds (the scratch transformer trains a BPE
tokenizer on the train split), so a :class:`ProbeContext` keeps what each
family builds (``cached``) and is shared by every probe of one pre-flight run;
the probes never change the context's models (the generic probes work on
copies or restore).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from streamguard import families
from streamguard.config import Config, OptimConfig
from streamguard.data.samples import read_split
from streamguard.errors import UserError
from streamguard.storage import ObjectStore
from streamguard.train import probes
from streamguard.train.amp import make_amp

log = logging.getLogger(__name__)

LR_LADDER = (1.0, 3.0, 10.0)
"""Smoke-test learning rates, as multiples of the family's configured one (see ``smoke_test``)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def probe_indices(samples, view, n: int) -> list[int]:
    """Up to ``n`` indices of ``samples`` for the tiny overfit: distinct keys in ``view`` (no two drawn samples are
    the same input to the family), at most one side of each ``pair_id``, the classes taken in turn (both appear
    when both exist), cheapest first (``view.sizes``, then split order)."""
    order = sorted(range(len(samples)), key=lambda i: (view.sizes[i] if view.sizes is not None else 0, i))
    by_class: dict[int, list[int]] = {}
    for i in order:
        by_class.setdefault(int(samples[i].target), []).append(i)
    out: list[int] = []
    keys: set[str] = set()
    pairs: set[str] = set()
    queues = [by_class[c] for c in sorted(by_class)]
    while len(out) < n and any(queues):
        for q in queues:
            while q and len(out) < n:
                i = q.pop(0)
                pid = getattr(samples[i], "pair_id", None)
                if view.keys[i] in keys or (pid and pid in pairs):
                    continue
                keys.add(view.keys[i])
                if pid:
                    pairs.add(pid)
                out.append(i)
                break
    return out


class ProbeContext:
    """The probes' shared pieces: the train samples and each family's model and items, built once.

    ``seed`` seeds the models (like a training seed); ``workdir`` (default: a
    temporary directory removed by :meth:`close`) holds the scratch checkpoint.
    """

    def __init__(self, data_dir: str, graphs_dir: str | None, cfg: Config, *, seed: int = 0,
                 store: ObjectStore | None = None, workdir: str | Path | None = None):
        self.data_dir, self.graphs_dir, self.cfg, self.seed, self.store = data_dir, graphs_dir, cfg, seed, store
        self._own_tmp = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="sg-probe-") if workdir is None else workdir)
        self._cache: dict[str, Any] = {}
        self._samples: list | None = None

    def close(self) -> None:
        self._cache.clear()
        self._samples = None
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ProbeContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- pieces
    def train_samples(self):
        if self._samples is None:
            samples = read_split(self.data_dir, "train")
            if not samples:
                raise UserError(f"{self.data_dir}/train.jsonl: no training samples")
            self._samples = samples
        return self._samples

    def samples(self, split: str):
        """The samples of ``split`` (train: :meth:`train_samples`), read once."""
        if split == "train":
            return self.train_samples()
        return self.cached(f"samples:{split}", lambda: read_split(self.data_dir, split))

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` the first time ``key`` is asked for, the same object after (a family's model and items)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def opt(self, family: str) -> OptimConfig:
        return families.get(family).optim_config(self.cfg)


def _context(ctx: ProbeContext | None, data_dir, graphs_dir, cfg, seed, store) -> tuple[ProbeContext, bool]:
    if ctx is not None:
        return ctx, False
    return ProbeContext(data_dir, graphs_dir, cfg, seed=seed, store=store), True


def smoke_test(family: str, data_dir: str, graphs_dir: str | None, cfg: Config, *, n: int = 32, steps: int = 50,
               seed: int = 0, lr: float | None = None, lr_multipliers: tuple[float, ...] = LR_LADDER,
               device: torch.device | str | None = None, store: ObjectStore | None = None,
               context: ProbeContext | None = None) -> dict[str, Any]:
    """Tiny-overfit smoke test of ``family`` on ``n`` training samples for ``steps`` steps.

    ``lr``: the base learning rate, default the family's ``lr`` (its
    ``fallback_lr`` when none is fixed). The probe tries ``lr x m`` for each
    ``m`` in ``lr_multipliers`` (default 1, 3, 10) and stops at the first that
    passes: the configured LR is tuned for many epochs on the full data, not for
    memorising 32 samples in 50 steps (the ``test`` profile's tiny transformer
    reaches 3 % reduction at its lr 1e-3 and passes at 3e-3), while a real bug
    -- labels not reaching the loss, frozen weights, a constant model, lr 0 --
    fails at every rung. Returns the passing (or the last) attempt's
    ``probes.tiny_overfit`` dict (``passed``, ``first_loss``, ``final_loss``,
    ``reduction``, ``reason`` …) plus ``family``, ``device``, ``precision``,
    ``labels`` (count per class) and ``attempts`` (lr, final loss, passed).
    """
    fam = families.get(family)
    ctx, own = _context(context, data_dir, graphs_dir, cfg, seed, store)
    try:
        dev = torch.device(device) if device is not None else default_device()
        opt = ctx.opt(family)
        if lr is None:
            lr = opt.lr if opt.lr is not None else opt.fallback_lr
        amp_ctx = make_amp(dev, cfg.train.amp)
        samples = ctx.train_samples()
        view = fam.views(ctx, "train")
        indices = probe_indices(samples, view, n)
        if not indices:
            raise UserError(f"smoke {family}: no training samples to probe")
        model, batches = fam.smoke_batches(ctx, indices, opt.batch_size)
        labels = torch.cat([b["labels"] for b in batches]).tolist()
        targets = [int(samples[i].target) for i in indices]
        if labels != targets:
            return {"passed": False, "first_loss": "n/a", "final_loss": "n/a", "reduction": 0.0, "steps": 0,
                    "samples": len(labels), "train_losses": [], "lr": lr, "attempts": [], "family": family,
                    "reason": f"the batches' labels {labels[:8]} are not the samples' targets {targets[:8]}: labels "
                              "are lost or reordered between the data and the loss"}
        attempts = []
        for m in lr_multipliers or (1.0,):
            with probes.preserved_rng(dev):
                torch.manual_seed(ctx.seed)  # dropout in the probe: reproducible for a seed
                res = probes.tiny_overfit(model, batches, steps=steps, lr=lr * m, device=dev, amp_ctx=amp_ctx,
                                          max_norm=opt.grad_clip or None)
            attempts.append({"lr": lr * m, "final_loss": res["final_loss"], "reduction": res["reduction"],
                             "passed": res["passed"]})
            if res["passed"]:
                break
        pair_ids = [samples[i].pair_id for i in indices if samples[i].pair_id]
        res.update(family=family, device=str(dev), precision=amp_ctx.precision, base_lr=lr, attempts=attempts,
                   labels={str(c): labels.count(c) for c in sorted(set(labels))},
                   sampling={"view": view.method, "distinct_views": len({view.keys[i] for i in indices}),
                             "pairs_with_both_sides": len(pair_ids) - len(set(pair_ids)),
                             "train_samples": len(samples), "train_views": len(set(view.keys))})
        return res
    finally:
        if own:
            ctx.close()


def memory_check(family: str, data_dir: str, graphs_dir: str | None, cfg: Config, *, limit_share: float = 0.9,
                 total_bytes: int | None = None, seed: int = 0, device: torch.device | str | None = None,
                 store: ObjectStore | None = None, context: ProbeContext | None = None) -> dict[str, Any]:
    """Forward + backward of one worst-case batch of ``family`` at the configured batch size (and max_length).

    ``total_bytes`` replaces the measured device/RAM total (tests force a
    failure with it). Returns ``probes.memory_test``'s dict (``passed``,
    ``peak_bytes``, ``optimizer_state_bytes``, ``total_bytes``, ``share``,
    ``reason`` …) plus ``family``, ``precision``, ``batch_size`` and the batch's
    shape (``seq_len`` / ``nodes`` …).
    """
    fam = families.get(family)
    ctx, own = _context(context, data_dir, graphs_dir, cfg, seed, store)
    try:
        dev = torch.device(device) if device is not None else default_device()
        amp_ctx = make_amp(dev, cfg.train.amp)
        batch_size = ctx.opt(family).batch_size
        model, batch, shape = fam.memory_batch(ctx, batch_size)
        home = next(model.parameters()).device
        model.to(dev)  # memory_test moves the batch, not the model; the weights count in the peak
        try:
            res = probes.memory_test(model, batch, device=dev, limit_share=limit_share, total_bytes=total_bytes,
                                     amp_ctx=amp_ctx)
        finally:
            model.to(home)
        res.update(family=family, precision=amp_ctx.precision, configured_batch_size=batch_size, **shape)
        return res
    finally:
        if own:
            ctx.close()
