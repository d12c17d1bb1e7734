"""The gate: the ``CHECKS`` registry, choosing from it, and :func:`preflight`, which runs the chosen checks,
writes both reports and stops the run (:class:`PreflightError`, exit 4) when a required check failed."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from streamguard.config import Config
from streamguard.errors import PreflightError, UserError
from streamguard.preflight import accelerator, cluster, data, object_store, probes, selftests
from streamguard.preflight.options import PreflightOptions, PreflightRun
from streamguard.preflight.report import write_reports
from streamguard.preflight.result import CheckResult
from streamguard.storage import ObjectStore

CHECKS_ENV = "STREAMGUARD_PREFLIGHT_CHECKS"


@dataclass(frozen=True)
class Check:
    """One check group of the registry."""

    run: Callable[[PreflightRun], list[CheckResult]]
    """Runs the group (each of its results through ``run_check``, so a crash is a failed result) and returns
    its results in report order; reads the run's inputs, options and earlier results."""
    required: bool = True
    """False: the group's failures are reported but never stop the run (its results get ``required=False``).
    Skipped results are never required."""


CHECKS: dict[str, Check] = {
    "accelerator": Check(accelerator.run),
    "safety": Check(selftests.run),  # safety_atomic_json, safety_amp_order, safety_lr_fallback
    "data": Check(data.run),
    "object_store": Check(object_store.run),
    "cluster": Check(cluster.run),
    "smoke": Check(probes.run_smoke),  # smoke_<family>; skipped when the data check failed
    "memory": Check(probes.run_memory),  # memory_<family>; likewise
}
"""Every check group by the name ``--checks`` / ``$STREAMGUARD_PREFLIGHT_CHECKS`` use, in the order they run
(all of them by default)."""


def parse_checks(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]`` (the form of ``--checks`` and ``$STREAMGUARD_PREFLIGHT_CHECKS``)."""
    return [c.strip() for c in text.split(",") if c.strip()]


def select_checks(checks: Sequence[str] | None) -> list[str]:
    """``checks``, else ``$STREAMGUARD_PREFLIGHT_CHECKS``, else every group; an unknown name is a UserError
    (exit 2) listing the known ones."""
    if checks is None:
        env = os.environ.get(CHECKS_ENV, "").strip()
        checks = parse_checks(env) if env else list(CHECKS)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise UserError(f"pre-flight checks: unknown {', '.join(map(repr, unknown))} (known: {', '.join(CHECKS)})")
    return list(checks)


def _set_threads(cfg: Config, cpu_threads: int | None) -> int:
    """Torch threads for the probes (those training will use, else ``cpu_threads`` on a CPU); returns the old."""
    threads = torch.get_num_threads()
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    elif cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(min(threads, cpu_threads))
    return threads


def preflight(data_dir: str, graphs_dir: str | None, cfg: Config, json_path: str, md_path: str,
              store: ObjectStore | None = None, options: PreflightOptions | None = None) -> dict[str, Any]:
    """Run the selected checks (``options.checks``; default: ``$STREAMGUARD_PREFLIGHT_CHECKS``, else all) on
    ``data_dir`` / ``graphs_dir`` / ``store`` with ``cfg``; write the JSON and Markdown reports; raise
    PreflightError (exit 4) when a required check failed. Returns the JSON report."""
    from streamguard import families
    from streamguard.smoke import ProbeContext
    from streamguard.train.device import cuda_required

    o = options or PreflightOptions()
    require_gpu = o.require_gpu or cuda_required()  # $STREAMGUARD_REQUIRE_CUDA: set by cluster profiles on GPU tasks
    smoke = list(families.names() if o.smoke_families is None else o.smoke_families)
    memory = list([n for n in families.names() if families.get(n).memory_probe] if o.memory_families is None
                  else o.memory_families)
    t0 = time.time()
    selected = select_checks(o.checks)
    probed = [*(smoke if "smoke" in selected else ()), *(memory if "memory" in selected else ())]
    gate = PreflightRun(data_dir=data_dir, graphs_dir=graphs_dir, cfg=cfg, store=store, options=o,
                        require_gpu=require_gpu, selected=selected, smoke_families=smoke, memory_families=memory,
                        probes_build_transformer=any("transformer" in (f, *families.get(f).requires) for f in probed),
                        probes=ProbeContext(data_dir, graphs_dir, cfg, seed=o.seed, store=store))
    threads = _set_threads(cfg, o.cpu_threads)
    try:
        for name, check in CHECKS.items():
            if name in selected:
                results = check.run(gate)
                for r in results if not check.required else ():
                    r.required = False
                gate.results += results
    finally:
        gate.probes.close()
        torch.set_num_threads(threads)
    report = write_reports(gate.results, round(time.time() - t0, 3), require_gpu, json_path, md_path)
    failed = [r for r in gate.results if r.blocking]
    if failed:
        raise PreflightError("pre-flight failed: " + "; ".join(f"{r.name}: {r.message}" for r in failed)
                             + f" (report: {md_path})")
    return report
