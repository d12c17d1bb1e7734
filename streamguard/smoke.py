"""Per-family probes on the real models and data: tiny overfit and single-batch memory.

Both build the family's model the way training does (``training.build_transformer``,
``training.build_gnn``; the fusion head over the two encoders' embeddings, as
``train_fusion`` does) and hand it to the generic probes in
:mod:`streamguard.train.probes`:

* ``smoke_test(family, ...)``: 32 training samples (classes alternating, so both
  are present) in batches of the configured size, 50 steps at the family's
  configured learning rate (its ``fallback_lr`` when none is fixed; then 3x and
  10x that when it does not pass, see ``smoke_test``); passes when
  the final loss is below 0.5 and at least 70 % below the first
  (``probes.tiny_overfit``). A family that cannot overfit 32 samples has a bug in
  the model, its inputs or its labels. For ``fusion`` the two fresh encoders embed
  the samples and the features are standardised per dimension (see
  ``_smoke_batches``) before the head is trained.
* ``memory_check(family, ...)``: forward + backward of one batch at the
  configured batch size made of the *largest* training items -- the longest
  token sequences padded to ``transformer.max_length``, the graphs with the most
  nodes -- under the configured AMP, plus the optimizer state; fails above
  ``limit_share`` (90 %) of the device memory (CUDA) or of the usable RAM (CPU,
  peak RSS) (``probes.memory_test``).

Building a family costs seconds (the scratch transformer trains a BPE
tokenizer on the train split), so a :class:`ProbeContext` builds each family
once and is shared by every probe of one pre-flight run; the probes never
change the context's models (the generic probes work on copies or restore).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from streamguard.config import Config, OptimConfig
from streamguard.data.samples import read_split
from streamguard.errors import UserError
from streamguard.storage import ObjectStore
from streamguard.train import probes
from streamguard.train.amp import make_amp

log = logging.getLogger(__name__)

FAMILIES = ("transformer", "gnn", "fusion")
LR_LADDER = (1.0, 3.0, 10.0)
"""Smoke-test learning rates, as multiples of the family's configured one (see ``smoke_test``)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise UserError(f"family {family!r}: unknown (expected one of {', '.join(FAMILIES)})")


def _balanced_indices(labels: list[int], n: int) -> list[int]:
    """The first ``n`` indices taking the classes in turn (so both appear when both exist)."""
    by_class = {c: [i for i, y in enumerate(labels) if y == c] for c in sorted(set(labels))}
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for c in list(by_class):
            if by_class[c] and len(out) < n:
                out.append(by_class[c].pop(0))
    return out


def _chunks(items: list, size: int) -> list[list]:
    size = max(1, int(size))
    return [items[i:i + size] for i in range(0, len(items), size)]


class ProbeContext:
    """Each family's model and training items, built once as training builds them.

    ``seed`` seeds the models (like a training seed); ``workdir`` (default: a
    temporary directory removed by :meth:`close`) holds the scratch checkpoint.
    """

    def __init__(self, data_dir: str, graphs_dir: str | None, cfg: Config, *, seed: int = 0,
                 store: ObjectStore | None = None, workdir: str | Path | None = None):
        self.data_dir, self.graphs_dir, self.cfg, self.seed, self.store = data_dir, graphs_dir, cfg, seed, store
        self._own_tmp = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="sg-probe-") if workdir is None else workdir)
        self._cache: dict[str, Any] = {}

    def close(self) -> None:
        self._cache.clear()
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ProbeContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- pieces
    def train_samples(self):
        if "samples" not in self._cache:
            samples = read_split(self.data_dir, "train")
            if not samples:
                raise UserError(f"{self.data_dir}/train.jsonl: no training samples")
            self._cache["samples"] = samples
        return self._cache["samples"]

    def transformer(self):
        """``(model, tokenizer, TokenDataset of the train split)``."""
        if "transformer" not in self._cache:
            from streamguard.models.transformer import TokenDataset
            from streamguard.training import build_transformer

            samples = self.train_samples()
            texts = [s.func for s in samples]
            model, tok = build_transformer(self.cfg, texts, self.seed, self.workdir, self.store)
            ds = TokenDataset(texts, [s.target for s in samples], tok, self.cfg.transformer.max_length)
            self._cache["transformer"] = (model, tok, ds)
        return self._cache["transformer"]

    def tokenizer_if_built(self):
        return self._cache["transformer"][1] if "transformer" in self._cache else None

    def gnn(self):
        """``(model, train graphs in train-split order)``."""
        if "gnn" not in self._cache:
            from streamguard.training import build_gnn, graph_splits

            if not self.graphs_dir:
                raise UserError("graphs directory: not given (the GNN probes need the output of build-graphs)")
            graphs = graph_splits(self.graphs_dir, self.data_dir)["train"]
            self._cache["gnn"] = (build_gnn(self.cfg, self.seed), graphs)
        return self._cache["gnn"]

    def fusion_head(self, transformer_dim: int, gnn_dim: int):
        from streamguard.models.fusion import FusionHead

        torch.manual_seed(self.seed)  # as train_fusion seeds its head
        return FusionHead(transformer_dim, gnn_dim, hidden=self.cfg.fusion.hidden, dropout=self.cfg.fusion.dropout)

    @torch.no_grad()
    def fusion_features(self, indices: list[int]) -> torch.Tensor:
        """Both (untrained) encoders' embeddings of the train samples at ``indices``, concatenated."""
        from streamguard.models.gnn import gnn_collate

        tmodel, _, ds = self.transformer()
        gmodel, graphs = self.gnn()
        modes = [(m, m.training) for model in (tmodel, gmodel) for m in model.modules()]
        try:
            tmodel.eval()
            gmodel.eval()
            t = torch.cat([tmodel.embed(ds.collate([ds[i] for i in c])).float() for c in _chunks(indices, 64)])
            g = torch.cat([gmodel.embed(gnn_collate([graphs[i] for i in c])).float() for c in _chunks(indices, 64)])
        finally:
            for m, training in modes:  # per module: a loaded HF model is in eval mode inside a training wrapper
                m.training = training
        return torch.cat([t, g], dim=1)

    def opt(self, family: str) -> OptimConfig:
        return getattr(self.cfg, family)


def _context(ctx: ProbeContext | None, data_dir, graphs_dir, cfg, seed, store) -> tuple[ProbeContext, bool]:
    if ctx is not None:
        return ctx, False
    return ProbeContext(data_dir, graphs_dir, cfg, seed=seed, store=store), True


def _smoke_batches(ctx: ProbeContext, family: str, n: int) -> tuple[Any, list[dict]]:
    from streamguard.models.fusion import features_collate
    from streamguard.models.gnn import gnn_collate

    samples = ctx.train_samples()
    idx = _balanced_indices([s.target for s in samples], n)
    bs = ctx.opt(family).batch_size
    if family == "transformer":
        model, _, ds = ctx.transformer()
        return model, [ds.collate([ds[i] for i in c]) for c in _chunks(idx, bs)]
    if family == "gnn":
        model, graphs = ctx.gnn()
        return model, [gnn_collate([graphs[i] for i in c]) for c in _chunks(idx, bs)]
    feats = ctx.fusion_features(idx)
    # Before training the encoders are fresh: a fresh transformer's first-token embedding is nearly the same for
    # every input (measured: ~0.1 % spread between samples), so raw features cannot be told apart. Standardising
    # each feature over the sampled items gives the head informative inputs at a sane scale, as trained encoders
    # would; the probe tests the head, the feature layout and the loss (the encoders have their own probes).
    feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-6)
    tdim = ctx.transformer()[0].hidden_size
    head = ctx.fusion_head(tdim, feats.shape[1] - tdim)
    items = [{"features": f, "labels": samples[i].target} for f, i in zip(feats, idx)]
    return head, [features_collate(c) for c in _chunks(items, bs)]


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
    _check_family(family)
    ctx, own = _context(context, data_dir, graphs_dir, cfg, seed, store)
    try:
        dev = torch.device(device) if device is not None else default_device()
        opt = ctx.opt(family)
        if lr is None:
            lr = opt.lr if opt.lr is not None else opt.fallback_lr
        amp_ctx = make_amp(dev, cfg.train.amp)
        model, batches = _smoke_batches(ctx, family, n)
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
        labels = torch.cat([b["labels"] for b in batches]).tolist()
        res.update(family=family, device=str(dev), precision=amp_ctx.precision, base_lr=lr, attempts=attempts,
                   labels={str(c): labels.count(c) for c in sorted(set(labels))})
        return res
    finally:
        if own:
            ctx.close()


def _pad_to(batch: dict, width: int, pad_id: int) -> dict:
    """Pad a token batch on the right to ``width`` columns (mask 0): the configured sequence length."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    extra = width - ids.shape[1]
    if extra <= 0:
        return batch
    ids = torch.cat([ids, torch.full((ids.shape[0], extra), pad_id, dtype=ids.dtype)], dim=1)
    mask = torch.cat([mask, torch.zeros((mask.shape[0], extra), dtype=mask.dtype)], dim=1)
    return dict(batch, input_ids=ids, attention_mask=mask)


def _memory_batch(ctx: ProbeContext, family: str) -> tuple[Any, dict, dict[str, Any]]:
    """The model, one batch of the largest training items at the configured batch size, and what it holds."""
    from streamguard.models.fusion import features_collate
    from streamguard.models.gnn import gnn_collate

    bs = ctx.opt(family).batch_size
    if family == "transformer":
        model, tok, ds = ctx.transformer()
        max_len = ctx.cfg.transformer.max_length
        lengths = [len(ids) for ids in ds.input_ids]
        idx = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:bs]
        batch = _pad_to(ds.collate([ds[i] for i in idx]), max_len, ds.pad_id)
        return model, batch, {"seq_len": int(batch["input_ids"].shape[1]), "max_length": max_len,
                              "longest_tokens": max(lengths), "batch_items": len(idx)}
    if family == "gnn":
        model, graphs = ctx.gnn()
        idx = sorted(range(len(graphs)), key=lambda i: -int(graphs[i].num_nodes))[:bs]
        batch = gnn_collate([graphs[i] for i in idx])
        return model, batch, {"nodes": int(batch["graph"].num_nodes), "edges": int(batch["graph"].edge_index.shape[1]),
                              "largest_graph_nodes": int(graphs[idx[0]].num_nodes), "batch_items": len(idx)}
    tmodel = ctx.transformer()[0]
    gmodel = ctx.gnn()[0]
    tdim, gdim = tmodel.hidden_size, int(gmodel.cfg.hidden)
    head = ctx.fusion_head(tdim, gdim)
    items = [{"features": torch.zeros(tdim + gdim), "labels": i % 2} for i in range(bs)]
    return head, features_collate(items), {"features": tdim + gdim, "batch_items": bs}


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
    _check_family(family)
    ctx, own = _context(context, data_dir, graphs_dir, cfg, seed, store)
    try:
        dev = torch.device(device) if device is not None else default_device()
        amp_ctx = make_amp(dev, cfg.train.amp)
        model, batch, shape = _memory_batch(ctx, family)
        home = next(model.parameters()).device
        model.to(dev)  # memory_test moves the batch, not the model; the weights count in the peak
        try:
            res = probes.memory_test(model, batch, device=dev, limit_share=limit_share, total_bytes=total_bytes,
                                     amp_ctx=amp_ctx)
        finally:
            model.to(home)
        res.update(family=family, precision=amp_ctx.precision, configured_batch_size=ctx.opt(family).batch_size,
                   **shape)
        return res
    finally:
        if own:
            ctx.close()
