"""What a pre-flight run is told (:class:`PreflightOptions`) and what its checks share while it runs
(:class:`PreflightRun`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from streamguard.preflight.result import CheckResult

if TYPE_CHECKING:
    from streamguard.config import Config
    from streamguard.smoke import ProbeContext
    from streamguard.storage import ObjectStore


@dataclass(frozen=True)
class PreflightOptions:
    """How :func:`~streamguard.preflight.preflight` checks; every field has the default the gate runs with."""

    require_gpu: bool = False
    """Fail without a usable CUDA device (and when the GPU pool has no allocatable GPU). ``$STREAMGUARD_REQUIRE_CUDA``
    (set by cluster profiles on GPU tasks) turns it on as well."""
    checks: Sequence[str] | None = None
    """The check groups to run (names of ``CHECKS``); None: ``$STREAMGUARD_PREFLIGHT_CHECKS``, else all."""
    smoke_families: Sequence[str] | None = None
    """Families given a smoke test; None: every registered family."""
    memory_families: Sequence[str] | None = None
    """Families given a memory check; None: those whose ``memory_probe`` is set."""
    memory_limit_share: float = 0.9
    """A memory check fails above this share of the device memory (CPU: of the usable RAM)."""
    memory_total_bytes: int | None = None
    """The memory the share is taken of; None: measured."""
    smoke_steps: int = 50
    smoke_samples: int = 32
    truncation_warn_share: float = 0.1
    """The data check warns when more than this share of functions exceed ``transformer.max_length``."""
    node_selector: Mapping[str, str] | None = None
    """The GPU pool's labels; None: ``$STREAMGUARD_GPU_NODE_SELECTOR``, else any node with a GPU."""
    namespace: str | None = None
    """Where the Secret is looked up; None: ``$POD_NAMESPACE``, else the service account's."""
    secret_name: str | None = None
    """The credentials Secret; None: ``$STREAMGUARD_SECRET_NAME`` (set from the compile profile), else
    ``streamguard-minio``."""
    secret_keys: Sequence[str] | None = None
    """The keys it must hold; None: ``$STREAMGUARD_SECRET_KEYS`` (comma-separated), else the MinIO pair."""
    k8s_api_client: Any = None
    """A ``kubernetes.client.ApiClient`` used as given (tests point one at an API double); None: in-cluster."""
    seed: int = 0
    """Seeds the probes' models."""
    cpu_threads: int | None = 1
    """Torch threads for the probes on a CPU-only machine (``train.num_threads`` wins when set; None keeps torch's
    default). The probes' models are tiny; on 2 cores shared with other work the demo transformer's smoke test took
    8 s on one thread and 16-58 s on two (OpenMP threads waiting on each other)."""


@dataclass
class PreflightRun:
    """One run of the gate: its inputs, the resolved options and the results so far (each check group's
    ``run(gate)`` reads it and returns its results)."""

    data_dir: str
    graphs_dir: str | None
    cfg: Config
    store: ObjectStore | None
    options: PreflightOptions
    require_gpu: bool
    """``options.require_gpu`` or ``$STREAMGUARD_REQUIRE_CUDA``."""
    selected: list[str]
    smoke_families: list[str]
    memory_families: list[str]
    probes_build_transformer: bool
    """A selected probe builds the transformer (so its tokenizer is there for the data check at no cost)."""
    probes: ProbeContext
    """Builds each family's probe model and items once, for the smoke and memory checks alike."""
    results: list[CheckResult] = field(default_factory=list)

    def failed(self, name: str) -> bool:
        """A result called ``name`` failed in this run."""
        return any(r.name == name and r.status == "fail" for r in self.results)
