"""The fusion family: a gated stacker over a seed's trained transformer and GNN, cross-fitted on held-out data.

Training reads the two encoders' model directories (``--transformer-dir``,
``--gnn-dir``; both must come from the same data, checked by fingerprint) and
scores every sample once with both (:func:`encoder_features`, the one place
fusion features are made -- the probes use it too, on fresh encoders): each
branch's logit margin, and with ``fusion.embeddings`` their pooled embeddings.
:class:`~streamguard.models.fusion.FusionHead` is that branch which is better
on validation (the *anchor*) plus a correction that starts at zero.

The head learns from the **validation split** -- data neither branch has
fitted -- cross-fitted in ``fusion.folds`` folds (:func:`cross_fit`): the
engine trains one correction per fold on the other folds, picks the epoch and
tunes the threshold on out-of-fold predictions, and the exported model averages
the copies. The engine also validates the untrained head (the anchor branch
itself, ``TrainJob.initial_candidate``): when no epoch beats it out of fold, the
fusion *is* its better branch. Test predictions never touch the head's training.

Featurisation (:func:`fused_items`): the two branches' predictors featurise the
functions their own way (tokens in windows; graphs from the shards or built on
the fly) and score them; training and inference (``predict``, ``scan``, the
bundle) both go through it. Under torchrun each rank featurises a contiguous
shard of each split (whole ``EMBED_BATCH`` chunks, so every feature is what one
process computes) and the shards are gathered (:func:`split_items`).

Saved as ``model.pt`` + ``config.json`` (the ``fusion`` config, the embedding
dims, the anchor and the branch order): everything inference needs besides the
two branch models, which compute the features from raw functions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from streamguard.data.samples import read_split
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


def margins(logits):
    """``[N, 1]``: the logit margin ``logit_vulnerable - logit_safe`` of ``[N, 2]`` logits (what the head reads)."""
    return (logits[:, 1] - logits[:, 0]).unsqueeze(1)


def encoder_features(tmodel, token_items: list, token_collate, gmodel, graphs: list,
                     batch_size: int = EMBED_BATCH, embeddings: bool = False):
    """``[N, 2 (+ d_t + d_g)]``: the transformer's and the GNN's logit margins of each sample, then (with
    ``embeddings``) the transformer's embedding of its tokens and the GNN's of its graph.

    ``token_items`` and ``graphs`` are the same N samples in the same order. The
    encoders run in eval mode under ``no_grad``; every module's train/eval mode is
    restored afterwards (a loaded HF model is in eval mode inside a training wrapper).
    """
    import torch

    from streamguard.models.gnn import gnn_collate

    parts = [(tmodel, token_items, token_collate), (gmodel, graphs, gnn_collate)]
    cols = [margins(embed_items(m, items, collate, batch_size, method="forward")) for m, items, collate in parts]
    if embeddings:
        cols += [embed_items(m, items, collate, batch_size) for m, items, collate in parts]
    return torch.cat(cols, dim=1)


def fused_items(encoders: Mapping[str, Predictor], fns: Functions, embeddings: bool) -> list[dict]:
    """The fusion's items for ``fns``: ``{"features", "labels"}`` with the layout of :func:`encoder_features`
    (the branches' margins, then with ``embeddings`` their embeddings), from the trained branches' predictors
    (``Predictor.logits`` / ``embed``: made once per ``fns``, so scoring the branches themselves reuses them)."""
    import torch

    from streamguard.models.fusion import BRANCHES

    cols = [margins(encoders[b].logits(fns)) for b in BRANCHES]
    if embeddings:
        cols += [encoders[b].embed(fns) for b in BRANCHES]
    feats = torch.cat(cols, dim=1) if len(fns) else torch.zeros(0, len(cols))
    return [{"features": f, "labels": x.target} for f, x in zip(feats, fns.samples)]


def split_items(encoders: Mapping[str, Predictor], samples: list, graphs: list, embeddings: bool) -> list[dict]:
    """:func:`fused_items` of a whole split (``graphs``: its GNN graphs, in the same order); distributed, each
    rank featurises its shard (whole ``EMBED_BATCH`` chunks, so every feature is what one process computes)
    and the shards are gathered (every rank gets the whole split)."""
    from streamguard.train import distributed

    parts = distributed.context().gather_shards(
        lambda part: fused_items(encoders, Functions(samples[part.start:part.stop],
                                                     given={gnn.NAME: graphs[part.start:part.stop]}), embeddings),
        len(samples), align=EMBED_BATCH)
    return [item for part in parts for item in part]


def folds_of(labels: list[int], folds: int, seed: int) -> list[int]:
    """A fold in ``0..folds-1`` for each item: stratified by label, a pure function of (labels, folds, seed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out, dealt = [0] * len(labels), 0
    for y in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == y]
        for j in torch.randperm(len(idx), generator=g).tolist():
            out[idx[j]] = dealt % folds  # dealt round the folds, one class after the other: sizes differ by <= 1
            dealt += 1
    return out


def cross_fit(items: list[dict], folds: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``(train, valid)`` rows for cross-fitting on ``items`` (the validation split).

    ``train`` holds each item once per correction copy that may learn from it
    (``head`` = every fold but its own); ``valid`` holds each item once, scored by
    its own fold's copy (out of fold).
    """
    if folds < 2:
        raise UserError(f"fusion.folds={folds}: cross-fitting needs at least 2 folds")
    fold = folds_of([int(it["labels"]) for it in items], folds, seed)
    train = [{**it, "head": k} for it, f in zip(items, fold) for k in range(folds) if k != f]
    valid = [{**it, "head": f} for it, f in zip(items, fold)]
    return train, valid


def better_branch(features, labels: list[int]) -> int:
    """Index of the branch whose margins score higher on these (validation) items: F1 at its tuned threshold,
    then PR-AUC; a tie goes to the later branch (the GNN)."""
    import torch

    from streamguard.eval.metrics import compute_metrics, tune_threshold
    from streamguard.models.fusion import BRANCHES

    def score(k: int) -> tuple[float, float]:
        p = torch.sigmoid(features[:, k]).numpy()
        m = compute_metrics(labels, p, tune_threshold(labels, p))
        return m["f1"], m["pr_auc"]

    scores = [score(k) for k in range(len(BRANCHES))]
    return max(range(len(BRANCHES)), key=lambda k: (scores[k], k))


def head(cfg, seed: int, transformer_dim: int, gnn_dim: int, anchor: int = 1):
    """A fresh fusion head for ``seed`` (the correction is zero: it starts as branch ``anchor``)."""
    import torch

    from streamguard.models.fusion import FusionHead

    torch.manual_seed(seed)
    fc = cfg.fusion
    return FusionHead(transformer_dim, gnn_dim, hidden=fc.hidden, dropout=fc.dropout, anchor=anchor,
                      folds=fc.folds, embeddings=fc.embeddings)


def probe_features(ctx, indices: list[int], embeddings: bool | None = None):
    """Both fresh (untrained) encoders' features of the train samples at ``indices`` (``embeddings``: None
    means as configured, ``fusion.embeddings``)."""
    tmodel, _, ds = transformer.probe_parts(ctx)
    gmodel, graphs, _ = gnn.probe_parts(ctx)
    return encoder_features(tmodel, [ds[i] for i in indices], ds.collate, gmodel, [graphs[i] for i in indices],
                            embeddings=ctx.cfg.fusion.embeddings if embeddings is None else embeddings)


class FusionFamily:
    name = "fusion"
    inputs = (GRAPHS, Input("transformer", "--transformer-dir", "this seed's transformer model directory"),
              Input("gnn", "--gnn-dir", "this seed's GNN model directory"))
    requires = ("transformer", "gnn")
    memory_probe = False  # a head over fixed-size features: its memory is the encoders', checked on their own
    initial_candidate = True  # the untrained head is the better branch: the fallback when training does not help

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
        import torch

        from streamguard.families import get
        from streamguard.models.fusion import BRANCHES

        self._check_encoders(run)
        fc = run.cfg.fusion
        encoders = {name: get(name).predictor(run.inputs[name], {}) for name in self.requires}
        gnn.shard_settings(run.inputs["graphs"])
        splits = ("valid", "test")  # the training split is the branches': the head never reads it
        samples = {s: read_split(run.data_dir, s) for s in splits}
        graphs = gnn.graph_splits(run.inputs["graphs"], run.data_dir, samples)
        items = {s: split_items(encoders, samples[s], graphs[s], fc.embeddings) for s in splits}
        valid_feats = torch.stack([it["features"] for it in items["valid"]]) if items["valid"] else torch.zeros(0, 2)
        anchor = better_branch(valid_feats, [x.target for x in samples["valid"]])
        train, valid = cross_fit(items["valid"], fc.folds, run.seed)
        return Datasets(train=train, valid=valid, test=items["test"],
                        test_ids=[x.id for x in samples["test"]], test_pair_ids=[x.pair_id for x in samples["test"]],
                        metadata={"fusion": {"trained_on": "valid", "folds": fc.folds, "anchor": BRANCHES[anchor],
                                             "valid_items": len(valid)}},
                        parts={"transformer_dim": encoders["transformer"].model.hidden_size,
                               "gnn_dim": int(encoders["gnn"].model.cfg.hidden), "anchor": anchor})

    def build(self, run: RunContext, data: Datasets):
        p = data.parts
        return head(run.cfg, run.seed, p["transformer_dim"], p["gnn_dim"], anchor=p["anchor"])

    def collate(self, data: Datasets):
        from streamguard.models.fusion import features_collate

        return features_collate

    def labels(self, items) -> list[int]:
        return [int(it["labels"]) for it in items]

    def lr_key_parts(self, run: RunContext, model) -> dict[str, Any]:
        return {"model": "fusion-stacker", "model_config": dataclasses.asdict(run.cfg.fusion),
                "dims": list(model.dims)}

    def save(self, run: RunContext, model, data: Datasets, model_dir: Path) -> None:
        import torch

        from streamguard.models.fusion import BRANCHES

        torch.save(model.cpu().state_dict(), model_dir / "model.pt")
        write_json_atomic(model_dir / "config.json", {"fusion": dataclasses.asdict(run.cfg.fusion),
                                                      "dims": list(model.dims), "branches": list(BRANCHES),
                                                      "anchor": BRANCHES[model.anchor]})

    def card_extra(self, run: RunContext) -> dict[str, Any]:
        return {"components": {"transformer": str(run.inputs["transformer"]), "gnn": str(run.inputs["gnn"])}}

    def load(self, model_dir: str | Path):
        import torch

        from streamguard.config import config_from_dict
        from streamguard.models.fusion import BRANCHES, FusionHead

        path = Path(model_dir) / "config.json"
        conf = read_json(path)
        if conf.get("branches") != list(BRANCHES) or conf.get("anchor") not in BRANCHES:
            raise UserError(f"{path}: branches {conf.get('branches')!r} / anchor {conf.get('anchor')!r}: not a "
                            f"fusion model of this version (expected branches {list(BRANCHES)})")
        fcfg = config_from_dict({"fusion": conf["fusion"]}).fusion
        model = FusionHead(*conf["dims"], hidden=fcfg.hidden, dropout=fcfg.dropout,
                           anchor=BRANCHES.index(conf["anchor"]), folds=fcfg.folds, embeddings=fcfg.embeddings)
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
            return fns.memo(self.name, lambda: Featurised(fused_items(encoders, fns, model.embeddings),
                                                          features_collate))

        return Predictor(self.name, model, featurise, card, {"dims": list(dims), "anchor": model.anchor,
                                                             "embeddings": model.embeddings})

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        from streamguard.models.fusion import features_collate

        # The stacker alone (a few weights per fold) cannot memorise 32 samples whatever its inputs, so the probe
        # always adds the embedding MLP: the feature layout, the head, the loss and the training step are
        # exercised on a head that can overfit. Before training the encoders are fresh: their outputs are nearly
        # the same for every input (a fresh transformer's first-token embedding: ~0.1 % spread between samples),
        # so raw features cannot be told apart. Standardising each feature over the sampled items gives the head
        # informative inputs at a sane scale, as trained encoders would (the encoders have their own probes).
        feats = probe_features(ctx, indices, embeddings=True)
        feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-6)
        tdim = transformer.probe_parts(ctx).model.hidden_size
        gdim = int(gnn.probe_parts(ctx).model.cfg.hidden)
        cfg = dataclasses.replace(ctx.cfg, fusion=dataclasses.replace(ctx.cfg.fusion, embeddings=True))
        model = head(cfg, ctx.seed, tdim, gdim)
        samples = ctx.train_samples()
        items = [{"features": f, "labels": samples[i].target} for f, i in zip(feats, indices)]
        return model, [features_collate(c) for c in chunks(items, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        import torch

        from streamguard.models.fusion import features_collate

        tdim = transformer.probe_parts(ctx).model.hidden_size
        gdim = int(gnn.probe_parts(ctx).model.cfg.hidden)
        model = head(ctx.cfg, ctx.seed, tdim, gdim)
        items = [{"features": torch.zeros(model.n_features), "labels": i % 2} for i in range(batch_size)]
        return model, features_collate(items), {"features": model.n_features, "batch_items": batch_size}


FAMILY = FusionFamily()
