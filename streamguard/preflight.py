"""Pre-flight gate: checks that stop a bad run before it spends GPU hours.

Each check is a function returning a :class:`CheckResult` (pass / warn / fail /
skip, a message and measured values). ``preflight`` runs them, writes
``preflight_report.json`` and ``preflight_report.md``, and raises
:class:`PreflightError` (exit code 4) when a required check failed — which
fails the KFP task and so stops the pipeline before any training task starts.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from streamguard.config import Config
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import PreflightError
from streamguard.jsonio import write_json_atomic
from streamguard.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skip
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    seconds: float = 0.0


def check_accelerator(require_gpu: bool) -> CheckResult:
    vals: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        vals.update(name=p.name, memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}",
                    bf16=torch.cuda.is_bf16_supported(), device_count=torch.cuda.device_count())
        return CheckResult("accelerator", "pass", f"{p.name}, {p.total_memory / 2**30:.1f} GiB", vals)
    if require_gpu:
        return CheckResult("accelerator", "fail", "the profile asks for a GPU but CUDA is not available", vals)
    return CheckResult("accelerator", "pass", "CPU only (no GPU requested)", vals)


def check_data(data_dir: str, graphs_dir: str | None, max_length: int | None = None) -> CheckResult:
    vals: dict[str, Any] = {}
    splits = {}
    for s in SPLITS:
        p = Path(data_dir) / f"{s}.jsonl"
        if not p.is_file():
            return CheckResult("data", "fail", f"{p}: split file missing", vals)
        splits[s] = read_split(data_dir, s)
        if not splits[s]:
            return CheckResult("data", "fail", f"{p}: split is empty", vals)
        vals[f"{s}_size"] = len(splits[s])
        vals[f"{s}_positive_share"] = round(sum(x.target for x in splits[s]) / len(splits[s]), 4)
    problems = []
    for s in SPLITS:
        if len({x.target for x in splits[s]}) < 2:
            problems.append(f"split {s} has a single class")
    code_sets = {s: {" ".join(x.func.split()) for x in splits[s]} for s in SPLITS}
    leaks = {f"{a}&{b}": len(code_sets[a] & code_sets[b]) for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))}
    vals["duplicates_across_splits"] = leaks
    if any(leaks.values()):
        problems.append(f"functions shared across splits: {leaks}")
    if graphs_dir:
        from streamguard.graphs import load_graphs

        for s in SPLITS:
            have = {g.sample_id for g in load_graphs(graphs_dir, s)}
            missing = [x.id for x in splits[s] if x.id not in have]
            vals[f"{s}_graphs_missing"] = len(missing)
            if missing:
                problems.append(f"split {s}: {len(missing)} samples without a graph (first {missing[0]!r})")
    if problems:
        return CheckResult("data", "fail", "; ".join(problems), vals)
    return CheckResult("data", "pass", "splits present, both classes, no cross-split duplicates, graphs complete", vals)


def check_store(store: ObjectStore | None, cfg: Config) -> CheckResult:
    if store is None:
        return CheckResult("object_store", "skip", "no object store configured", required=False)
    key = f"preflight/probe-{uuid.uuid4().hex}.txt"
    payload = b"streamguard preflight probe"
    try:
        store.put_bytes(key, payload)
        ok = store.get_bytes(key) == payload
        store.delete(key)
        gone = not store.exists(key)
    except Exception as e:  # any client/network error is the finding
        return CheckResult("object_store", "fail", f"{store.uri}: {type(e).__name__}: {e}".splitlines()[0],
                           {"uri": store.uri})
    vals = {"uri": store.uri, "lr_cache_ttl_hours": cfg.train.lr_cache_ttl_hours}
    if not (ok and gone):
        return CheckResult("object_store", "fail", f"{store.uri}: write/read/delete probe gave wrong results", vals)
    return CheckResult("object_store", "pass", f"{store.uri}: write/read/delete probe ok", vals)


def _run(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    t = time.time()
    try:
        r = fn()
    except Exception as e:
        log.debug("check %s crashed", name, exc_info=True)
        r = CheckResult(name, "fail", f"check crashed: {type(e).__name__}: {e}".splitlines()[0],
                        {"traceback": traceback.format_exc(limit=3)})
    r.seconds = round(time.time() - t, 3)
    return r


def render_markdown(results: list[CheckResult]) -> str:
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    lines = ["# StreamGuard pre-flight", "", "| check | status | required | message |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {icon[r.status]} | {'yes' if r.required else 'no'} | {r.message} |")
    return "\n".join(lines) + "\n"


def preflight(data_dir: str, graphs_dir: str | None, cfg: Config, json_path: str, md_path: str,
              store: ObjectStore | None = None, require_gpu: bool = False) -> dict[str, Any]:
    """Run every check; write the JSON and Markdown reports; raise PreflightError on a required failure."""
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("accelerator", lambda: check_accelerator(require_gpu)),
        ("data", lambda: check_data(data_dir, graphs_dir, cfg.transformer.max_length)),
        ("object_store", lambda: check_store(store, cfg)),
    ]
    results = [_run(n, f) for n, f in checks]
    failed = [r for r in results if r.status == "fail" and r.required]
    report = {"passed": not failed, "checks": [asdict(r) for r in results]}
    write_json_atomic(json_path, report)
    Path(md_path).parent.mkdir(parents=True, exist_ok=True)
    Path(md_path).write_text(render_markdown(results))
    for r in results:
        log.info("preflight %-14s %s  %s", r.name, r.status.upper(), r.message)
    if failed:
        raise PreflightError(f"pre-flight failed: " + "; ".join(f"{r.name}: {r.message}" for r in failed)
                             + f" (report: {md_path})")
    return report
