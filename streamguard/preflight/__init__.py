"""Pre-flight gate: checks that stop a bad run before it spends GPU hours.

Each check is a function returning a :class:`CheckResult` (pass / warn / fail /
skip, a one-line message, measured values, whether it is required).
:func:`preflight` runs the selected check groups of the ``CHECKS`` registry,
writes ``preflight_report.json`` and ``preflight_report.md``, and raises
:class:`~streamguard.errors.PreflightError` (exit code 4) when a required check
failed — which fails the KFP task and so stops the pipeline before any training
task starts. A check that crashes is a failed check (its message is one line;
the traceback goes to the JSON values). :class:`PreflightOptions` holds how it
checks.

Check groups (names as in ``--checks`` / ``$STREAMGUARD_PREFLIGHT_CHECKS`` and
in the report), one module each:

``accelerator`` (:mod:`.accelerator`)
    CUDA where the profile asks for a GPU, and a tiny kernel run.
``safety`` (:mod:`.selftests`)
    Self-tests of the atomic JSON writer, the AMP order of the one training
    step, and the LR finder's fallback.
``data`` (:mod:`.data`)
    Splits, classes, cross-split duplicates and ids, truncation, a graph for
    every sample.
``object_store`` (:mod:`.object_store`)
    Endpoint, bucket, write/read/list/delete probe, LR cache location and TTL.
``cluster`` (:mod:`.cluster`)
    In a pod only: GPU nodes of the profile's pool and the profile's Secret.
``smoke``, ``memory`` (:mod:`.probes`)
    A tiny overfit and a worst-case batch per family.

The run itself (:mod:`.gate`), the reports (:mod:`.report`), the options and
the state a run's checks share (:mod:`.options`), results (:mod:`.result`).

Cost on 2 CPU cores: ``smoke`` and ``memory`` are the expensive ones (they build
the models; a :class:`~streamguard.smoke.ProbeContext` builds each once);
everything else takes about a second. Measured with every check on (2 cores
shared with other work, load ~2.5): ``demo`` profile, 2000 functions: 17 s in
``preflight`` (20 s for ``streamguard preflight`` with imports; the transformer
smoke test is 9 s of it); ``test`` profile, 240 functions: 4.6 s (7.6 s).
"""

from streamguard.preflight.accelerator import check_accelerator
from streamguard.preflight.cluster import (
    GPU_RESOURCE,
    NODE_SELECTOR_ENV,
    SA_DIR,
    SECRET_KEYS,
    SECRET_KEYS_ENV,
    SECRET_NAME,
    SECRET_NAME_ENV,
    check_cluster,
    in_cluster_reason,
    parse_node_selector,
    secret_settings,
)
from streamguard.preflight.data import check_data
from streamguard.preflight.gate import CHECKS, CHECKS_ENV, Check, parse_checks, preflight, select_checks
from streamguard.preflight.object_store import check_store
from streamguard.preflight.options import PreflightOptions, PreflightRun
from streamguard.preflight.probes import check_memory, check_smoke
from streamguard.preflight.report import render_markdown
from streamguard.preflight.result import CheckResult
from streamguard.preflight.selftests import check_amp_order, check_atomic_json, check_lr_fallback

__all__ = [
    "CHECKS", "CHECKS_ENV", "GPU_RESOURCE", "NODE_SELECTOR_ENV", "SA_DIR", "SECRET_KEYS", "SECRET_KEYS_ENV",
    "SECRET_NAME", "SECRET_NAME_ENV", "Check", "CheckResult", "PreflightOptions", "PreflightRun", "check_accelerator",
    "check_amp_order", "check_atomic_json", "check_cluster", "check_data", "check_lr_fallback", "check_memory",
    "check_smoke", "check_store", "in_cluster_reason", "parse_checks", "parse_node_selector", "preflight",
    "render_markdown", "secret_settings", "select_checks",
]
