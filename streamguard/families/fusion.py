"""The fusion family: a head over a seed's trained transformer's and GNN's embeddings.

Training reads the two encoders' model directories (``--transformer-dir``,
``--gnn-dir``; both must come from the same data, checked by fingerprint),
embeds every sample once with both (:func:`encoder_features`, the one place
fusion features are made -- the probes use it too, on fresh encoders) and
trains :class:`~streamguard.models.fusion.FusionHead` on the concatenation.
Under torchrun the embedding is shared out: each rank embeds a contiguous
shard of each split (whole ``EMBED_BATCH`` chunks, so every feature is what one
process computes) and the shards are gathered, so all ranks train on the same
features for 1/W of the embedding time.
Saved as ``model.pt`` + ``config.json`` (the ``fusion`` config and the feature
dims).

Featurisation (:func:`fused_items`): the two encoders' predictors featurise the
functions their own way (tokens; graphs from the shards or built on the fly) and
:func:`encoder_features` embeds them; training and inference both go through it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError
from streamguard.families import gnn, transformer
from streamguard.families.base import (
    EMBED_BATCH,
    GRAPHS,
    Datasets,
    Featurised,
    Functions,
    Input,
    Predictor,
    RunContext,
    chunks,
    embed_items,
    read_card,
)
from streamguard.jsonio import read_json, write_json_atomic


def encoder_features(tmodel, token_items: list, token_collate, gmodel, graphs: list,
                     batch_size: int = EMBED_BATCH):
    """``[N, d_t + d_g]``: the transformer's embedding of each token item next to the GNN's of its graph.

    ``token_items`` and ``graphs`` are the same N samples in the same order. The
    encoders run in eval mode under ``no_grad``; every module's train/eval mode is
    restored afterwards (:func:`~streamguard.families.base.embed_items`).
    """
    import torch

    from streamguard.models.gnn import gnn_collate

    return torch.cat([embed_items(tmodel, token_items, token_collate, batch_size),
                      embed_items(gmodel, graphs, gnn_collate, batch_size)], dim=1)


def fused_items(encoders: Mapping[str, Predictor], fns: Functions) -> list[dict]:
    """The fusion's items for ``fns``: ``{"features": [d_t + d_g], "labels"}``, the trained transformer's and
    GNN's embeddings of each function as those families featurise it (``Predictor.embed``: the same
    :func:`~streamguard.families.base.embed_items` as :func:`encoder_features`; made once per ``fns``, so
    scoring the encoders themselves reuses them)."""
    import torch

    feats = torch.cat([encoders["transformer"].embed(fns), encoders["gnn"].embed(fns)], dim=1)
    return [{"features": f, "labels": x.target} for f, x in zip(feats, fns.samples)]


def split_items(encoders: Mapping[str, Predictor], samples: list, graphs: list) -> list[dict]:
    """:func:`fused_items` of a whole split (``graphs``: its GNN graphs, in the same order); distributed, each
    rank featurises its shard (whole ``EMBED_BATCH`` chunks, so every feature is what one process computes)
    and the shards are gathered (every rank gets the whole split)."""
    from streamguard.train import distributed

    parts = distributed.context().gather_shards(
        lambda part: fused_items(encoders, Functions(samples[part.start:part.stop],
                                                     given={gnn.NAME: graphs[part.start:part.stop]})),
        len(samples), align=EMBED_BATCH)
    return [item for part in parts for item in part]


def head(cfg, seed: int, transformer_dim: int, gnn_dim: int):
    """A fresh fusion head for ``seed``."""
    import torch

    from streamguard.models.fusion import FusionHead

    torch.manual_seed(seed)
    return FusionHead(transformer_dim, gnn_dim, hidden=cfg.fusion.hidden, dropout=cfg.fusion.dropout)


def probe_features(ctx, indices: list[int]):
    """Both fresh (untrained) encoders' features of the train samples at ``indices``."""
    tmodel, _, ds = transformer.probe_parts(ctx)
    gmodel, graphs, _ = gnn.probe_parts(ctx)
    return encoder_features(tmodel, [ds[i] for i in indices], ds.collate, gmodel, [graphs[i] for i in indices])


class FusionFamily:
    name = "fusion"
    inputs = (GRAPHS, Input("transformer", "--transformer-dir", "this seed's transformer model directory"),
              Input("gnn", "--gnn-dir", "this seed's GNN model directory"))
    requires = ("transformer", "gnn")
    memory_probe = False  # a head over fixed-size features: its memory is the encoders', checked on their own

    def optim_config(self, cfg):
        return cfg.fusion

    def _check_encoders(self, run: RunContext) -> None:
        for inp in self.inputs:
            if inp.name in self.requires:
                card = Path(run.inputs[inp.name]) / "model_card.json"
                if not card.is_file():
                    raise UserError(f"{card}: missing; {inp.flag} must be a {inp.name} model from this pipeline")
                if read_json(card).get("data_fingerprint") != run.fingerprint:
                    raise UserError(f"{card}: data_fingerprint differs from {run.data_dir} ({run.fingerprint}); "
                                    "models from another dataset")

    def datasets(self, run: RunContext) -> Datasets:
        from streamguard.families import get

        self._check_encoders(run)
        encoders = {name: get(name).predictor(run.inputs[name], {}) for name in self.requires}
        gnn.shard_settings(run.inputs["graphs"])
        samples = {s: read_split(run.data_dir, s) for s in SPLITS}
        graphs = gnn.graph_splits(run.inputs["graphs"], run.data_dir, samples)
        data = {s: split_items(encoders, samples[s], graphs[s]) for s in SPLITS}
        return Datasets(train=data["train"], valid=data["valid"], test=data["test"],
                        test_ids=[x.id for x in samples["test"]], test_pair_ids=[x.pair_id for x in samples["test"]],
                        parts={"transformer_dim": encoders["transformer"].model.hidden_size})

    def build(self, run: RunContext, data: Datasets):
        tdim = data.parts["transformer_dim"]
        return head(run.cfg, run.seed, tdim, int(data.train[0]["features"].numel() - tdim))

    def collate(self, data: Datasets):
        from streamguard.models.fusion import features_collate

        return features_collate

    def labels(self, items) -> list[int]:
        return [int(it["labels"]) for it in items]

    def lr_key_parts(self, run: RunContext, model) -> dict[str, Any]:
        return {"model": "fusion-head", "model_config": dataclasses.asdict(run.cfg.fusion), "dims": list(model.dims)}

    def save(self, run: RunContext, model, data: Datasets, model_dir: Path) -> None:
        import torch

        torch.save(model.cpu().state_dict(), model_dir / "model.pt")
        write_json_atomic(model_dir / "config.json", {"fusion": dataclasses.asdict(run.cfg.fusion),
                                                      "dims": list(model.dims)})

    def card_extra(self, run: RunContext) -> dict[str, Any]:
        return {"components": {"transformer": str(run.inputs["transformer"]), "gnn": str(run.inputs["gnn"])}}

    def load(self, model_dir: str | Path):
        import torch

        from streamguard.config import config_from_dict
        from streamguard.models.fusion import FusionHead

        conf = read_json(Path(model_dir) / "config.json")
        fcfg = config_from_dict({"fusion": conf["fusion"]}).fusion
        model = FusionHead(*conf["dims"], hidden=fcfg.hidden, dropout=fcfg.dropout)
        model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
        return model.eval()

    def views(self, ctx, split: str):
        from streamguard.data.views import combine

        return combine("fusion", transformer.FAMILY.views(ctx, split), gnn.FAMILY.views(ctx, split))

    def predictor(self, model_dir: str | Path, requires: Mapping[str, Predictor]) -> Predictor:
        from streamguard.models.fusion import features_collate

        card = read_card(model_dir)
        encoders = {name: requires[name] for name in self.requires}
        for name, p in encoders.items():
            if p.card.get("data_fingerprint") != card.get("data_fingerprint"):
                raise UserError(f"{Path(model_dir) / 'model_card.json'}: data_fingerprint "
                                f"{card.get('data_fingerprint')!r} differs from its {name}'s "
                                f"{p.card.get('data_fingerprint')!r}: encoders from another training run")
        model = self.load(model_dir)
        dims = (encoders["transformer"].model.hidden_size, int(encoders["gnn"].model.cfg.hidden))
        if tuple(model.dims) != dims:
            raise UserError(f"{Path(model_dir) / 'config.json'}: dims {list(model.dims)} do not match its encoders' "
                            f"embeddings {list(dims)}")

        def featurise(fns: Functions) -> Featurised:
            return fns.memo(self.name, lambda: Featurised(fused_items(encoders, fns), features_collate))

        return Predictor(self.name, model, featurise, card, {"dims": list(dims)})

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        from streamguard.models.fusion import features_collate

        feats = probe_features(ctx, indices)
        # Before training the encoders are fresh: a fresh transformer's first-token embedding is nearly the same for
        # every input (measured: ~0.1 % spread between samples), so raw features cannot be told apart. Standardising
        # each feature over the sampled items gives the head informative inputs at a sane scale, as trained encoders
        # would; the probe tests the head, the feature layout and the loss (the encoders have their own probes).
        feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-6)
        tdim = transformer.probe_parts(ctx).model.hidden_size
        model = head(ctx.cfg, ctx.seed, tdim, feats.shape[1] - tdim)
        samples = ctx.train_samples()
        items = [{"features": f, "labels": samples[i].target} for f, i in zip(feats, indices)]
        return model, [features_collate(c) for c in chunks(items, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        import torch

        from streamguard.models.fusion import features_collate

        tdim = transformer.probe_parts(ctx).model.hidden_size
        gdim = int(gnn.probe_parts(ctx).model.cfg.hidden)
        model = head(ctx.cfg, ctx.seed, tdim, gdim)
        items = [{"features": torch.zeros(tdim + gdim), "labels": i % 2} for i in range(batch_size)]
        return model, features_collate(items), {"features": tdim + gdim, "batch_items": batch_size}


FAMILY = FusionFamily()
