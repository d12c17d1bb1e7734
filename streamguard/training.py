"""The three training stages: transformer, GNN and fusion, all through ``train.engine.fit``.

Each stage reads the ingested data directory (and the graphs directory), builds
its model and datasets, hands a :class:`TrainJob` to the one engine, and writes:

* ``model_dir``: the model (transformer: HF ``save_pretrained`` form with its
  tokenizer; GNN and fusion: ``model.pt`` state dict + ``config.json``) and
  ``model_card.json`` (family, seed, data fingerprint, code version, metrics,
  threshold);
* ``result_dir``: ``training_metadata.json``, ``metrics.json``,
  ``predictions.jsonl`` (idx, label, prob) — what ``aggregate`` reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from streamguard import __version__
from streamguard.config import Config
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError
from streamguard.jsonio import read_json, write_json_atomic
from streamguard.storage import ObjectStore
from streamguard.train.engine import TrainJob, TrainResult, fit, write_outputs

log = logging.getLogger(__name__)
FAMILIES = ("transformer", "gnn", "fusion")


def data_fingerprint(data_dir: str | os.PathLike) -> str:
    report = Path(data_dir) / "data_report.json"
    if not report.is_file():
        raise UserError(f"{report}: missing (is {data_dir} the output of `streamguard ingest`?)")
    return str(read_json(report)["fingerprint"])


def default_run_key(fingerprint: str, cfg: Config) -> str:
    """Checkpoints are keyed by run; without a KFP job id, by data + config (not the store client settings)."""
    h = hashlib.sha256(json.dumps({k: v for k, v in cfg.to_dict().items() if k != "store"},
                                  sort_keys=True).encode()).hexdigest()[:10]
    return f"{fingerprint}-{h}"


def _checkpoint_key(run_key: str, family: str, seed: int) -> str:
    return f"checkpoints/{run_key}/{family}/seed-{seed}/last.pt"


def _write_card(model_dir: Path, job: TrainJob, result: TrainResult, fingerprint: str, extra: dict | None = None) -> dict:
    card = {
        "family": job.family, "seed": job.seed, "data_fingerprint": fingerprint, "code_version": __version__,
        "threshold": result.threshold, "best_epoch": result.best_epoch,
        "test_metrics": result.test_metrics, "valid_metrics": result.valid_metrics,
        "lr": result.lr_info.get("lr"), "lr_source": result.lr_info.get("lr_source"), **(extra or {}),
    }
    write_json_atomic(model_dir / "model_card.json", card)
    return card


def _finish(job: TrainJob, result: TrainResult, model_dir: Path, result_dir: Path, fingerprint: str,
            extra: dict | None = None) -> dict[str, Any]:
    write_outputs(job, result, result_dir)
    card = _write_card(model_dir, job, result, fingerprint, extra)
    write_json_atomic(result_dir / "model_card.json", card)
    log.info("%s seed %d: test F1 %.4f (threshold %.3f)", job.family, job.seed, result.test_metrics["f1"], result.threshold)
    return card


# ---------------------------------------------------------------- transformer
def _resolve_pretrained(name: str, store: ObjectStore | None, cache_dir: Path) -> str:
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


def build_transformer(cfg: Config, train_texts: list[str], seed: int, workdir: Path, store: ObjectStore | None = None):
    """The transformer classifier and its tokenizer, as training starts them (used by smoke/memory probes too)."""
    from streamguard.models.transformer import TransformerClassifier, load_tokenizer, make_scratch_checkpoint

    tc = cfg.transformer
    if tc.pretrained == "scratch":
        ckpt = make_scratch_checkpoint(train_texts, workdir / "scratch", vocab_size=tc.scratch_vocab,
                                       hidden=tc.scratch_hidden, layers=tc.scratch_layers, heads=tc.scratch_heads,
                                       max_length=tc.max_length, seed=seed)
    else:
        ckpt = _resolve_pretrained(tc.pretrained, store, workdir / "pretrained")
    torch.manual_seed(seed)  # the classification head of a pretrained encoder is new: seed it
    return TransformerClassifier(ckpt), load_tokenizer(ckpt, tc.max_length)


def build_gnn(cfg: Config, seed: int):
    """A fresh GNN classifier for ``seed``."""
    from streamguard.models.gnn import GNNClassifier

    torch.manual_seed(seed)
    return GNNClassifier(cfg.gnn)


def _transformer_parts(cfg: Config, data_dir: str, seed: int, workdir: Path, store: ObjectStore | None):
    from streamguard.models.transformer import TokenDataset

    tc = cfg.transformer
    splits = {s: read_split(data_dir, s) for s in SPLITS}
    model, tok = build_transformer(cfg, [s.func for s in splits["train"]], seed, workdir, store)
    data = {s: TokenDataset([x.func for x in v], [x.target for x in v], tok, tc.max_length) for s, v in splits.items()}
    return model, tok, data, splits


def train_transformer(data_dir: str, model_dir: str, result_dir: str, seed: int, cfg: Config,
                      store: ObjectStore | None = None, run_key: str | None = None) -> dict[str, Any]:
    fp = data_fingerprint(data_dir)
    model_dir, result_dir = Path(model_dir), Path(result_dir)
    with tempfile.TemporaryDirectory(prefix="sg-transformer-") as tmp:
        model, tok, data, splits = _transformer_parts(cfg, data_dir, seed, Path(tmp), store)
        tc = cfg.transformer
        truncated = {s: d.truncated for s, d in data.items()}
        job = TrainJob(
            family="transformer", model=model, train=data["train"], valid=data["valid"], test=data["test"],
            collate=data["train"].collate, labels=lambda ds: list(ds.labels), opt=tc, train_cfg=cfg.train,
            seed=seed, out_dir=result_dir, store=store,
            checkpoint_key=_checkpoint_key(run_key or default_run_key(fp, cfg), "transformer", seed),
            lr_key_parts={"data": fp, "model": tc.pretrained, "model_config": dataclasses.asdict(tc),
                          "max_length": tc.max_length},
            test_ids=[s.id for s in splits["test"]], test_pair_ids=[s.pair_id for s in splits["test"]], lengths=[len(ids) for ids in data["train"].input_ids],
            extra_metadata={"data_fingerprint": fp, "truncated_at_max_length": truncated})
        result = fit(job)
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir, tok)
    return _finish(job, result, model_dir, result_dir, fp, {"pretrained": tc.pretrained, "max_length": tc.max_length})


# ---------------------------------------------------------------------- GNN
def graph_splits(graphs_dir: str, data_dir: str) -> dict[str, list]:
    from streamguard.graphs import load_graphs

    out = {}
    for s in SPLITS:
        graphs = {g.sample_id: g for g in load_graphs(graphs_dir, s)}
        ids = [x.id for x in read_split(data_dir, s)]
        missing = [i for i in ids if i not in graphs]
        if missing:
            raise UserError(f"{graphs_dir}: split {s} has no graph for sample id {missing[0]!r} "
                            f"({len(missing)} missing; rebuild with `streamguard build-graphs`)")
        out[s] = [graphs[i] for i in ids]
    return out


def _pair_ids(data_dir: str) -> list[str | None]:
    return [s.pair_id for s in read_split(data_dir, "test")]


def _gnn_labels(ds) -> list[int]:
    return [int(g.y.view(-1)[0]) for g in ds]


def load_gnn(model_dir: str | os.PathLike):
    from streamguard.config import GNNConfig, config_from_dict
    from streamguard.models.gnn import GNNClassifier

    conf = read_json(Path(model_dir) / "config.json")
    gcfg = config_from_dict({"gnn": conf["gnn"]}).gnn if conf.get("gnn") else GNNConfig()
    model = GNNClassifier(gcfg)
    model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def train_gnn(data_dir: str, graphs_dir: str, model_dir: str, result_dir: str, seed: int, cfg: Config,
              store: ObjectStore | None = None, run_key: str | None = None) -> dict[str, Any]:
    from streamguard.graphs import BUILDER_VERSION
    from streamguard.models.gnn import gnn_collate

    fp = data_fingerprint(data_dir)
    model_dir, result_dir = Path(model_dir), Path(result_dir)
    splits = graph_splits(graphs_dir, data_dir)
    model = build_gnn(cfg, seed)
    job = TrainJob(
        family="gnn", model=model, train=splits["train"], valid=splits["valid"], test=splits["test"],
        collate=gnn_collate, labels=_gnn_labels, opt=cfg.gnn, train_cfg=cfg.train, seed=seed, out_dir=result_dir,
        store=store, checkpoint_key=_checkpoint_key(run_key or default_run_key(fp, cfg), "gnn", seed),
        lr_key_parts={"data": fp, "model": "gnn", "model_config": dataclasses.asdict(cfg.gnn),
                      "graph_builder": BUILDER_VERSION},
        test_ids=[g.sample_id for g in splits["test"]], test_pair_ids=_pair_ids(data_dir),
        extra_metadata={"data_fingerprint": fp, "graph_builder": BUILDER_VERSION})
    result = fit(job)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.cpu().state_dict(), model_dir / "model.pt")
    write_json_atomic(model_dir / "config.json", {"gnn": dataclasses.asdict(cfg.gnn), "graph_builder": BUILDER_VERSION})
    return _finish(job, result, model_dir, result_dir, fp, {"graph_builder": BUILDER_VERSION})


# ------------------------------------------------------------------- fusion
@torch.no_grad()
def _embed(model, items: list, collate, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    out = [model.embed(collate(items[i:i + batch_size])).float() for i in range(0, len(items), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def train_fusion(data_dir: str, graphs_dir: str, transformer_dir: str, gnn_dir: str, model_dir: str, result_dir: str,
                 seed: int, cfg: Config, store: ObjectStore | None = None, run_key: str | None = None) -> dict[str, Any]:
    from streamguard.models.fusion import FusionHead, features_collate
    from streamguard.models.gnn import gnn_collate
    from streamguard.models.transformer import TokenDataset, TransformerClassifier, load_tokenizer

    fp = data_fingerprint(data_dir)
    model_dir, result_dir = Path(model_dir), Path(result_dir)
    for d, what in ((transformer_dir, "transformer"), (gnn_dir, "gnn")):
        card = Path(d) / "model_card.json"
        if not card.is_file():
            raise UserError(f"{card}: missing; --{what}-dir must be a {what} model from this pipeline")
        if read_json(card).get("data_fingerprint") != fp:
            raise UserError(f"{card}: data_fingerprint differs from {data_dir} ({fp}); models from another dataset")
    tmax = read_json(Path(transformer_dir) / "model_card.json").get("max_length", cfg.transformer.max_length)
    tok = load_tokenizer(transformer_dir, tmax)
    tmodel = TransformerClassifier(transformer_dir)
    gmodel = load_gnn(gnn_dir)
    graphs = graph_splits(graphs_dir, data_dir)
    data, ids = {}, {}
    for s in SPLITS:
        samples = read_split(data_dir, s)
        tds = TokenDataset([x.func for x in samples], [x.target for x in samples], tok, tmax)
        feats = torch.cat([_embed(tmodel, [tds[i] for i in range(len(tds))], tds.collate),
                           _embed(gmodel, graphs[s], gnn_collate)], dim=1)
        data[s] = [{"features": f, "labels": x.target} for f, x in zip(feats, samples)]
        ids[s] = [x.id for x in samples]
    torch.manual_seed(seed)
    head = FusionHead(tmodel.hidden_size, int(data["train"][0]["features"].numel() - tmodel.hidden_size),
                      hidden=cfg.fusion.hidden, dropout=cfg.fusion.dropout)
    job = TrainJob(
        family="fusion", model=head, train=data["train"], valid=data["valid"], test=data["test"],
        collate=features_collate, labels=lambda ds: [int(it["labels"]) for it in ds], opt=cfg.fusion,
        train_cfg=cfg.train, seed=seed, out_dir=result_dir, store=store,
        checkpoint_key=_checkpoint_key(run_key or default_run_key(fp, cfg), "fusion", seed),
        lr_key_parts={"data": fp, "model": "fusion-head", "model_config": dataclasses.asdict(cfg.fusion),
                      "dims": list(head.dims)},
        test_ids=ids["test"], test_pair_ids=_pair_ids(data_dir), extra_metadata={"data_fingerprint": fp})
    result = fit(job)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(head.cpu().state_dict(), model_dir / "model.pt")
    write_json_atomic(model_dir / "config.json", {"fusion": dataclasses.asdict(cfg.fusion), "dims": list(head.dims)})
    return _finish(job, result, model_dir, result_dir, fp, {"components": {"transformer": str(transformer_dir), "gnn": str(gnn_dir)}})
