"""Training one model family for one seed: the one path every ``train-*`` stage takes.

:func:`train` asks the family (``streamguard.families``) for its datasets and
a fresh model, hands one :class:`~streamguard.train.engine.TrainJob` to the
engine, and writes:

* ``model_dir``: the model, as the family saves it (transformer: HF
  ``save_pretrained`` form with its tokenizer; GNN and fusion: ``model.pt``
  state dict + ``config.json``) and ``model_card.json`` (family, seed, data
  fingerprint, code version, metrics, threshold, LR, plus the family's extra);
* ``result_dir``: ``training_metadata.json``, ``metrics.json``,
  ``predictions.jsonl`` (idx, label, prob) — what ``aggregate`` reads — and
  ``model_card.json``.

Under ``torchrun`` every rank runs :func:`train` (the engine shares the work,
``streamguard.train.distributed``); rank 0 alone writes both directories, the
others wait for it at a barrier, and every rank returns the same card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from streamguard import __version__
from streamguard.config import Config
from streamguard.errors import UserError
from streamguard.families import Family, RunContext, get
from streamguard.jsonio import read_json, write_json_atomic
from streamguard.storage import ObjectStore
from streamguard.train import distributed
from streamguard.train.engine import TrainJob, TrainResult, fit, write_outputs

log = logging.getLogger(__name__)


def data_fingerprint(data_dir: str | os.PathLike) -> str:
    report = Path(data_dir) / "data_report.json"
    if not report.is_file():
        raise UserError(f"{report}: missing (is {data_dir} the output of `streamguard ingest`?)")
    return str(read_json(report)["fingerprint"])


def default_run_key(fingerprint: str, cfg: Config) -> str:
    """Checkpoints are keyed by run; without a KFP job id, by data + config (not the store client settings, not
    the publish settings: neither changes what training does)."""
    h = hashlib.sha256(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in ("store", "publish")},
                                  sort_keys=True).encode()).hexdigest()[:10]
    return f"{fingerprint}-{h}"


def checkpoint_key(run_key: str, family: str, seed: int) -> str:
    return f"checkpoints/{run_key}/{family}/seed-{seed}/last.pt"


def _card(job: TrainJob, result: TrainResult, fingerprint: str, extra: dict | None = None) -> dict:
    return {
        "family": job.family, "seed": job.seed, "data_fingerprint": fingerprint, "code_version": __version__,
        "threshold": result.threshold, "best_epoch": result.best_epoch,
        "test_metrics": result.test_metrics, "valid_metrics": result.valid_metrics,
        "lr": result.lr_info.get("lr"), "lr_source": result.lr_info.get("lr_source"), **(extra or {}),
    }


def _finish(job: TrainJob, result: TrainResult, model_dir: Path, result_dir: Path, fingerprint: str,
            extra: dict | None = None) -> dict[str, Any]:
    write_outputs(job, result, result_dir)
    card = _card(job, result, fingerprint, extra)
    write_json_atomic(model_dir / "model_card.json", card)
    write_json_atomic(result_dir / "model_card.json", card)
    log.info("%s seed %d: test F1 %.4f (threshold %.3f)", job.family, job.seed, result.test_metrics["f1"],
             result.threshold)
    return card


def _check_inputs(family: Family, inputs: Mapping[str, Any]) -> dict[str, str]:
    want = ["data", *(i.name for i in family.inputs)]
    missing = [k for k in want if not inputs.get(k)]
    if missing:
        raise UserError(f"train {family.name}: input {missing[0]!r} not given (needs {', '.join(want)})")
    extra = sorted(set(inputs) - set(want))
    if extra:
        raise UserError(f"train {family.name}: unknown input {extra[0]!r} (needs {', '.join(want)})")
    return {k: str(inputs[k]) for k in want}


def train(family: str | Family, inputs: Mapping[str, Any], model_dir: str | os.PathLike,
          result_dir: str | os.PathLike, seed: int, cfg: Config, store: ObjectStore | None = None,
          run_key: str | None = None) -> dict[str, Any]:
    """Train ``family`` (a registered name or a Family) for ``seed``; return its model card.

    ``inputs``: ``data`` (the ingested data directory) and one directory per
    entry of ``family.inputs`` (``graphs``, ``transformer``, ``gnn`` …), by
    name. ``run_key`` namespaces the checkpoint (default: data fingerprint +
    config hash); a retry with the same key resumes.
    """
    fam = get(family) if isinstance(family, str) else family
    dirs = _check_inputs(fam, inputs)
    dist = distributed.context(cfg.train.dist_timeout_s)
    fp = data_fingerprint(dirs["data"])
    model_dir, result_dir = Path(model_dir), Path(result_dir)
    with tempfile.TemporaryDirectory(prefix=f"sg-{fam.name}-") as tmp:
        run = RunContext(cfg=cfg, seed=seed, inputs=dirs, fingerprint=fp, workdir=Path(tmp), store=store)
        data = fam.datasets(run)
        model = fam.build(run, data)
        job = TrainJob(
            family=fam.name, model=model, train=data.train, valid=data.valid, test=data.test,
            collate=fam.collate(data), labels=fam.labels, opt=fam.optim_config(cfg), train_cfg=cfg.train, seed=seed,
            out_dir=result_dir, store=store,
            checkpoint_key=checkpoint_key(run_key or default_run_key(fp, cfg), fam.name, seed),
            lr_key_parts={"data": fp, **fam.lr_key_parts(run, model)},
            test_ids=data.test_ids, test_pair_ids=data.test_pair_ids, lengths=data.lengths,
            extra_metadata={"data_fingerprint": fp, **data.metadata}, initial_candidate=fam.initial_candidate)
        result = fit(job)
        if dist.is_main:
            model_dir.mkdir(parents=True, exist_ok=True)
            fam.save(run, model, data, model_dir)
    if dist.is_main:
        card = _finish(job, result, model_dir, result_dir, fp, fam.card_extra(run))
    else:
        card = _card(job, result, fp, fam.card_extra(run))
    dist.barrier()  # the outputs are written before any rank reports success
    distributed.shutdown()
    return card
