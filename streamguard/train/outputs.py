"""What a finished training run leaves in its output directory: ``training_metadata.json`` (settings, LR
decision, history, timings, hardware, library versions), ``metrics.json`` and ``predictions.jsonl``.
:func:`write_outputs` is re-exported by ``streamguard.train.engine``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from streamguard import __version__
from streamguard.eval.predictions import write_predictions
from streamguard.jsonio import write_json_atomic

if TYPE_CHECKING:
    from streamguard.train.engine import TrainJob, TrainResult


def hardware(device: torch.device) -> dict[str, Any]:
    hw: dict[str, Any] = {"device": str(device), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        hw.update(gpu=p.name, gpu_memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}",
                  bf16=torch.cuda.is_bf16_supported())
    return hw


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "streamguard": __version__}
    for pkg in ("torch", "transformers", "tokenizers", "torch-geometric", "tree-sitter", "tree-sitter-c", "numpy",
                "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["cuda"] = torch.version.cuda or "none"
    return out


def write_outputs(job: TrainJob, result: TrainResult, out_dir: str | os.PathLike) -> dict[str, Any]:
    """``training_metadata.json``, ``metrics.json`` and ``predictions.jsonl`` (idx, label, probability)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = job.test_ids or [str(i) for i in range(len(result.test_labels))]
    write_predictions(out / "predictions.jsonl", ids, result.test_labels, result.test_probs, result.threshold,
                      job.test_pair_ids)
    metrics = {"family": job.family, "seed": job.seed, "threshold": result.threshold,
               "test": result.test_metrics, "valid": result.valid_metrics}
    write_json_atomic(out / "metrics.json", metrics)
    meta = {
        "family": job.family, "seed": job.seed, "config": {"optim": vars(job.opt), "train": vars(job.train_cfg)},
        "lr": result.lr_info.get("lr"), "lr_source": result.lr_info.get("lr_source"), "lr_info": result.lr_info,
        "history": result.history, "best_epoch": result.best_epoch, "threshold": result.threshold,
        "timings": {"train_seconds": result.seconds}, "resumed_from": result.resumed_from,
        "collapse_events": result.collapse_events, "distributed": result.distributed,
        "hardware": hardware(next(job.model.parameters()).device), "versions": library_versions(),
        "sizes": {"train": len(job.train), "valid": len(job.valid), "test": len(job.test)},
        **job.extra_metadata,
    }
    write_json_atomic(out / "training_metadata.json", meta)
    return meta
