"""Which device training runs on, and the rule that a GPU task never trains on the CPU by accident.

A cluster compile profile (``pipelines/platform.py``) sets ``STREAMGUARD_REQUIRE_CUDA=1`` on every
task of its GPU pool unless the profile says ``allow_cpu_training: true``. With it set,
``resolve_device`` stops at once, with one line and exit code 4, when CUDA is missing or does not
work (no GPU scheduled, or a node driver too old for the image's CUDA): otherwise the engine would
fall back to the CPU and spend the task's whole timeout there. Pre-flight reads the same variable.
"""

from __future__ import annotations

import os

from streamguard.errors import EXIT_PREFLIGHT, StreamGuardError

REQUIRE_CUDA_ENV = "STREAMGUARD_REQUIRE_CUDA"


class NoCudaError(StreamGuardError):
    """A GPU was required (``STREAMGUARD_REQUIRE_CUDA=1``) and none is usable. Exit code 4, as a failed
    pre-flight gate: the run stops before training."""

    exit_code = EXIT_PREFLIGHT


def cuda_required() -> bool:
    """``$STREAMGUARD_REQUIRE_CUDA`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(REQUIRE_CUDA_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_device(require_cuda: bool, index: int | None = None):
    """``cuda`` when a CUDA device works (a tiny kernel runs), else ``cpu``; with ``require_cuda`` a missing
    or broken CUDA raises :class:`NoCudaError` instead of falling back.

    ``index`` (a distributed run's ``LOCAL_RANK``): ``cuda:<index>``; fewer GPUs than that is a
    :class:`NoCudaError` whenever CUDA is there at all (ranks must not split between GPU and CPU)."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise NoCudaError(f"LOCAL_RANK {index}: this process needs GPU {index}, but torch sees {count} CUDA "
                              f"device(s); start at most {count} process(es) per node (torchrun --nproc-per-node)")
        where = "cuda" if index is None else f"cuda:{index}"
        try:
            ok = int((torch.ones(8, device=where) * 2).sum().item()) == 16
            problem = "" if ok else "a test kernel gave a wrong result"
        except RuntimeError as e:
            problem = f"a test kernel failed ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        if not problem:
            return torch.device(where)
    else:
        problem = "torch sees no CUDA device"
    if require_cuda:
        raise NoCudaError(f"{REQUIRE_CUDA_ENV}=1: this task needs a usable CUDA GPU, but {problem} "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); check the node's GPU and "
                          "driver, or set allow_cpu_training: true in the compile profile to train on the CPU")
    return torch.device("cpu")
