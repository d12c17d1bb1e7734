"""The transformer family: a Hugging Face encoder with a classification head over tokens.

Model and tokenizer: :mod:`streamguard.models.transformer`. ``transformer.pretrained``
is ``scratch`` (a BPE tokenizer trained on the train split and a small fresh
RoBERTa, written as a checkpoint in the run's work directory), a local
checkpoint directory, ``store:<prefix>`` (a checkpoint staged in the object
store) or a Hugging Face hub id. Items are a function's windows
(``transformer.window``/``stride``/``max_windows``, :func:`streamguard.models.transformer.encode`);
a batch holds all windows of its functions, and batches are bucketed by the
functions' total length (so by window count). Saved in ``save_pretrained`` form
with the tokenizer (the encoder and head loadable by ``transformers`` alone), the
window settings in its ``config.json`` and the window pooling in
``window_pooling.pt``.

Featurisation (:func:`token_dataset`): the one place Samples become token items --
the training splits, the probes, the fusion's transformer branch and inference
(:meth:`TransformerFamily.predictor`, with the tokenizer and window settings saved with the model).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from streamguard.data.samples import SPLITS, Sample, read_split
from streamguard.errors import UserError
from streamguard.families.base import (
    Datasets,
    Featurised,
    Functions,
    Input,
    Predictor,
    RunContext,
    chunks,
    read_card,
)

FEATURISE_SETTINGS = ("max_length",)
"""``model_card.json`` entries the featurisation depends on (written by ``card_extra``, read by ``predictor``)."""


def token_dataset(tokenizer, win, samples: Sequence[Sample]):
    """The token items of ``samples``: a ``TokenDataset`` of each function's windows (``win``: a ``Windowing``,
    the run's config in training, the one saved with the model in inference)."""
    from streamguard.models.transformer import TokenDataset

    return TokenDataset([s.func for s in samples], [s.target for s in samples], tokenizer, win)


def featurise_settings(cfg) -> dict[str, Any]:
    """The featurisation settings of a training run (its ``transformer`` config)."""
    return {k: getattr(cfg.transformer, k) for k in FEATURISE_SETTINGS}


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
    if tc.pretrained == "scratch":  # the tokenizer learns from the text the encoder will read
        text = windowing(cfg).text
        return make_scratch_checkpoint([text(t) for t in train_texts], workdir / "scratch", vocab_size=tc.scratch_vocab,
                                       hidden=tc.scratch_hidden, layers=tc.scratch_layers, heads=tc.scratch_heads,
                                       max_length=tc.max_length, seed=seed)
    return _resolve_pretrained(tc.pretrained, store, workdir / "pretrained")


def windowing(cfg):
    """The configured window settings (``transformer.window``, ``stride``, ``max_windows``)."""
    from streamguard.models.transformer import Windowing

    return Windowing.from_config(cfg.transformer)


def classifier(ckpt: str | Path, seed: int, cfg):
    """The classifier from ``ckpt`` with the configured windows; a new head (and the window pooling) is seeded."""
    import torch

    from streamguard.models.transformer import TransformerClassifier

    torch.manual_seed(seed)
    return TransformerClassifier(ckpt, windowing(cfg), window_batch=cfg.transformer.window_batch)


def view(ds, name: str = "transformer"):
    """The transformer's view of a ``TokenDataset``: a key of each function's window token ids."""
    from streamguard.data.views import View, digest

    return View(name, [digest(tuple(map(tuple, ws))) for ws in ds.windows],
                [n > ds.windowing.budget for n in ds.n_tokens],
                "transformer.max_windows", f"token ids in windows ({ds.windowing.max_windows} x {ds.windowing.window})",
                [len(ws) for ws in ds.windows])


class ProbeParts(NamedTuple):
    model: Any
    tokenizer: Any
    dataset: Any
    """The train split as a ``TokenDataset``."""


def probe_parts(ctx) -> ProbeParts:
    """The transformer and tokenizer as training starts them, and the train split; built once per ProbeContext."""
    def build() -> ProbeParts:
        from streamguard.models.transformer import load_tokenizer

        samples = ctx.train_samples()
        samples = ctx.train_samples()
        ckpt = checkpoint(ctx.cfg, [s.func for s in samples], ctx.seed, ctx.workdir, ctx.store)
        model = classifier(ckpt, ctx.seed, ctx.cfg)
        tok = load_tokenizer(ckpt, featurise_settings(ctx.cfg)["max_length"])
        return ProbeParts(model, tok, token_dataset(tok, model.windowing, samples))

    return ctx.cached("transformer", build)


def split_dataset(ctx, split: str):
    """A ``TokenDataset`` of ``split`` with the probes' tokenizer and windows (train: the probes' own)."""
    parts = probe_parts(ctx)
    if split == "train":
        return parts.dataset

    def build():
        return token_dataset(parts.tokenizer, parts.model.windowing, ctx.samples(split))

    return ctx.cached(f"transformer:{split}", build)


class TransformerFamily:
    name = "transformer"
    inputs: tuple[Input, ...] = ()
    requires: tuple[str, ...] = ()
    memory_probe = True
    initial_candidate = False

    def optim_config(self, cfg):
        return cfg.transformer

    def datasets(self, run: RunContext) -> Datasets:
        from streamguard.models.transformer import load_tokenizer

        win = windowing(run.cfg)
        splits = {s: read_split(run.data_dir, s) for s in SPLITS}
        ckpt = checkpoint(run.cfg, [s.func for s in splits["train"]], run.seed, run.workdir, run.store)
        tok = load_tokenizer(ckpt, featurise_settings(run.cfg)["max_length"])
        data = {s: token_dataset(tok, win, v) for s, v in splits.items()}
        return Datasets(train=data["train"], valid=data["valid"], test=data["test"],
                        test_ids=[s.id for s in splits["test"]], test_pair_ids=[s.pair_id for s in splits["test"]],
                        lengths=data["train"].lengths,
                        metadata={"windowing": win.to_dict(),
                                  "windows": {s: sum(len(w) for w in d.windows) for s, d in data.items()},
                                  "truncated_beyond_windows": {s: d.truncated for s, d in data.items()}},
                        parts={"checkpoint": ckpt, "tokenizer": tok})

    def build(self, run: RunContext, data: Datasets):
        return classifier(data.parts["checkpoint"], run.seed, run.cfg)

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
        return {"pretrained": run.cfg.transformer.pretrained, **featurise_settings(run.cfg),
                "windowing": windowing(run.cfg).to_dict()}

    def load(self, model_dir: str | Path):
        from streamguard.config import TransformerConfig
        from streamguard.models.transformer import TransformerClassifier

        return TransformerClassifier(model_dir, window_batch=TransformerConfig.window_batch).eval()

    def views(self, ctx, split: str):
        return view(split_dataset(ctx, split))

    def predictor(self, model_dir: str | Path, requires: Mapping[str, Predictor]) -> Predictor:
        from streamguard.models.transformer import load_tokenizer

        card = read_card(model_dir)
        missing = [k for k in FEATURISE_SETTINGS if k not in card]
        if missing:
            raise UserError(f"{Path(model_dir) / 'model_card.json'}: no {missing[0]!r}; not a transformer model card")
        settings = {k: card[k] for k in FEATURISE_SETTINGS}
        tok = load_tokenizer(model_dir, int(settings["max_length"]))
        model = self.load(model_dir)

        def featurise(fns: Functions) -> Featurised:
            def make() -> Featurised:
                ds = token_dataset(tok, model.windowing, fns.samples)
                return Featurised(ds, ds.collate)

            return fns.memo(self.name, make)

        return Predictor(self.name, model, featurise, card,
                         {"tokenizer": type(tok).__name__, "vocab_size": len(tok),
                          "pretrained": card.get("pretrained"), **settings, "windowing": model.windowing.to_dict()})

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        model, _, ds = probe_parts(ctx)
        return model, [ds.collate([ds[i] for i in c]) for c in chunks(indices, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        """The ``batch_size`` functions with the most windows, every window padded to the full window.

        With ``transformer.window_batch`` set, a training step holds the activations of one encoder pass (the
        other passes are checkpointed and recomputed one at a time in the backward pass): the batch is then cut
        to its first ``window_batch`` windows -- the same peak, without the time of the other passes."""
        from streamguard.models.transformer import collate_windows

        model, _, ds = probe_parts(ctx)
        win = model.windowing
        lengths = ds.lengths
        idx = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
        items, windows = [ds[i] for i in idx], sum(len(ds.windows[i]) for i in idx)
        if model.window_batch > 0:
            keep, left = [], model.window_batch
            for it in items:
                if left <= 0:
                    break
                keep.append(dict(it, windows=it["windows"][:left]))
                left -= len(keep[-1]["windows"])
            items = keep
        batch = collate_windows(items, ds.pad_id, width=win.window)
        return model, batch, {"seq_len": int(batch["input_ids"].shape[1]), "windows": int(batch["input_ids"].shape[0]),
                              "batch_windows": windows, "window_batch": model.window_batch,
                              "max_windows": win.max_windows, "max_length": ctx.cfg.transformer.max_length,
                              "longest_tokens": max(ds.n_tokens), "batch_items": len(idx)}


FAMILY = TransformerFamily()
