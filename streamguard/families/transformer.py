"""The transformer family: a Hugging Face encoder with a classification head over tokens.

Model and tokenizer: :mod:`streamguard.models.transformer`. ``transformer.pretrained``
is ``scratch`` (a BPE tokenizer trained on the train split and a small fresh
RoBERTa, written as a checkpoint in the run's work directory), a local
checkpoint directory, ``store:<prefix>`` (a checkpoint staged in the object
store) or a Hugging Face hub id. Items are token-id lists; batches are padded
per batch and bucketed by length. Saved in ``save_pretrained`` form with the
tokenizer (loadable by ``transformers`` alone).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError
from streamguard.families.base import Datasets, Input, RunContext, chunks


def _resolve_pretrained(name: str, store, cache_dir: Path) -> str:
    """A local dir, ``store:<prefix>`` (a checkpoint staged in the object store), or a HF hub id."""
    if name.startswith("store:"):
        if store is None:
            raise UserError(f"transformer.pretrained={name!r}: needs an object store")
        prefix = name[len("store:"):].strip("/") + "/"
        keys = store.list(prefix)
        if not keys:
            raise UserError(f"transformer.pretrained={name!r}: nothing under {prefix} in {store.uri}")
        for k in keys:
            store.get_file(k, cache_dir / k[len(prefix):])
        return str(cache_dir)
    return name


def checkpoint(cfg, train_texts: list[str], seed: int, workdir: Path, store=None) -> str | Path:
    """The checkpoint training starts from: ``scratch`` made in ``workdir`` from ``train_texts``, else resolved."""
    from streamguard.models.transformer import make_scratch_checkpoint

    tc = cfg.transformer
    if tc.pretrained == "scratch":
        return make_scratch_checkpoint(train_texts, workdir / "scratch", vocab_size=tc.scratch_vocab,
                                       hidden=tc.scratch_hidden, layers=tc.scratch_layers, heads=tc.scratch_heads,
                                       max_length=tc.max_length, seed=seed)
    return _resolve_pretrained(tc.pretrained, store, workdir / "pretrained")


def classifier(ckpt: str | Path, seed: int):
    """The classifier from ``ckpt``; the classification head of a pretrained encoder is new: seeded."""
    import torch

    from streamguard.models.transformer import TransformerClassifier

    torch.manual_seed(seed)
    return TransformerClassifier(ckpt)


class ProbeParts(NamedTuple):
    model: Any
    tokenizer: Any
    dataset: Any
    """The train split as a ``TokenDataset``."""


def probe_parts(ctx) -> ProbeParts:
    """The transformer and tokenizer as training starts them, and the train split; built once per ProbeContext."""
    def build() -> ProbeParts:
        from streamguard.models.transformer import TokenDataset, load_tokenizer

        samples = ctx.train_samples()
        texts, max_length = [s.func for s in samples], ctx.cfg.transformer.max_length
        ckpt = checkpoint(ctx.cfg, texts, ctx.seed, ctx.workdir, ctx.store)
        model = classifier(ckpt, ctx.seed)
        tok = load_tokenizer(ckpt, max_length)
        return ProbeParts(model, tok, TokenDataset(texts, [s.target for s in samples], tok, max_length))

    return ctx.cached("transformer", build)


def _pad_to(batch: dict, width: int, pad_id: int) -> dict:
    """Pad a token batch on the right to ``width`` columns (mask 0): the configured sequence length."""
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    extra = width - ids.shape[1]
    if extra <= 0:
        return batch
    ids = torch.cat([ids, torch.full((ids.shape[0], extra), pad_id, dtype=ids.dtype)], dim=1)
    mask = torch.cat([mask, torch.zeros((mask.shape[0], extra), dtype=mask.dtype)], dim=1)
    return dict(batch, input_ids=ids, attention_mask=mask)


class TransformerFamily:
    name = "transformer"
    inputs: tuple[Input, ...] = ()
    requires: tuple[str, ...] = ()
    memory_probe = True
    initial_candidate = False

    def optim_config(self, cfg):
        return cfg.transformer

    def datasets(self, run: RunContext) -> Datasets:
        from streamguard.models.transformer import TokenDataset, load_tokenizer

        tc = run.cfg.transformer
        splits = {s: read_split(run.data_dir, s) for s in SPLITS}
        ckpt = checkpoint(run.cfg, [s.func for s in splits["train"]], run.seed, run.workdir, run.store)
        tok = load_tokenizer(ckpt, tc.max_length)
        data = {s: TokenDataset([x.func for x in v], [x.target for x in v], tok, tc.max_length)
                for s, v in splits.items()}
        return Datasets(train=data["train"], valid=data["valid"], test=data["test"],
                        test_ids=[s.id for s in splits["test"]], test_pair_ids=[s.pair_id for s in splits["test"]],
                        lengths=[len(ids) for ids in data["train"].input_ids],
                        metadata={"truncated_at_max_length": {s: d.truncated for s, d in data.items()}},
                        parts={"checkpoint": ckpt, "tokenizer": tok})

    def build(self, run: RunContext, data: Datasets):
        return classifier(data.parts["checkpoint"], run.seed)

    def collate(self, data: Datasets):
        return data.train.collate

    def labels(self, items) -> list[int]:
        return list(items.labels)

    def lr_key_parts(self, run: RunContext, model) -> dict[str, Any]:
        tc = run.cfg.transformer
        return {"model": tc.pretrained, "model_config": dataclasses.asdict(tc), "max_length": tc.max_length}

    def save(self, run: RunContext, model, data: Datasets, model_dir: Path) -> None:
        model.save(model_dir, data.parts["tokenizer"])

    def card_extra(self, run: RunContext) -> dict[str, Any]:
        return {"pretrained": run.cfg.transformer.pretrained, "max_length": run.cfg.transformer.max_length}

    def load(self, model_dir: str | Path):
        from streamguard.models.transformer import TransformerClassifier

        return TransformerClassifier(model_dir).eval()

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        model, _, ds = probe_parts(ctx)
        return model, [ds.collate([ds[i] for i in c]) for c in chunks(indices, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        model, _, ds = probe_parts(ctx)
        max_len = ctx.cfg.transformer.max_length
        lengths = [len(ids) for ids in ds.input_ids]
        idx = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
        batch = _pad_to(ds.collate([ds[i] for i in idx]), max_len, ds.pad_id)
        return model, batch, {"seq_len": int(batch["input_ids"].shape[1]), "max_length": max_len,
                              "longest_tokens": max(lengths), "batch_items": len(idx)}


FAMILY = TransformerFamily()
