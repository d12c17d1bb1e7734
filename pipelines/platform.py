"""Compile profiles: where and how the pipeline's tasks run (``pipelines/profiles/NAME.yaml``).

A profile is data — image registry, GPU node-pool label, GPU count, CPU/memory,
retries, timeouts, the Secret/ConfigMap the pods read — and ``apply(profile, stage,
task)`` turns it into KFP task settings and ``kfp.kubernetes`` platform settings.
``pipelines/compile.py`` passes ``configure(profile)`` to the pipeline as its task hook.

``load_profile`` refuses a profile the open-source backend would run wrongly: a retry whose
``backoff_max_duration`` is shorter than (retries + 1) x the timeout (Argo counts it from the
first attempt, so a long attempt is never retried), a retry without a timeout, a non-integral
backoff factor (Argo reads it as an integer), and a pull policy that never pulls a rebuilt tag.

More than one GPU per training step: ``gpu.gpus_per_task: N`` runs each training step under torchrun with N
processes in one pod of N GPUs; ``gpu.nodes: M`` makes each training step create and follow a Kubeflow
Trainer ``TrainJob`` of M such pods (``streamguard.launch``; docs/kubeflow.md, "More than one GPU").

The ``local`` profile has no ``kubernetes:`` section and adds no Kubernetes settings
(``kfp.local`` runs it on this machine). Credentials never appear here: only the
*names* of the Secret and ConfigMap and of their keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from pipelines.streamguard_pipeline import TRAINING_STAGES
from streamguard.champion import IMAGE_ENV
from streamguard.errors import UserError
from streamguard.launch import NPROC_ENV
from streamguard.launch.trainjob import TEMPLATE_ENV, Toleration, TrainJobTemplate
from streamguard.registry import URL_ENV as REGISTRY_URL_ENV
from streamguard.train.device import REQUIRE_CUDA_ENV
from streamguard.typed import build

PROFILES_DIR = Path(__file__).parent / "profiles"
GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class ProfileError(UserError):
    """A profile file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Retry:
    """``PipelineTask.set_retry``: a preempted GPU node resumes from the last checkpoint on retry."""
    num_retries: int = 3
    backoff_duration: str = "60s"
    backoff_factor: float = 2.0
    """Argo reads the factor as an integer: 2, 3, ... (a fraction stops every retry)."""
    backoff_max_duration: str | None = None
    """How long after the *first* attempt's start a retry may still start (Argo ``backoff.maxDuration``).
    None: (num_retries + 1) x the pool's timeout + the backoffs, so every retry can fire. Set: at least
    (num_retries + 1) x timeout, or the profile is refused."""

    def seconds(self, timeout_seconds: int) -> tuple[int, int]:
        """(backoff, max duration) in seconds for a pool whose attempts time out after ``timeout_seconds``."""
        from kfp.dsl.structures import convert_duration_to_seconds

        backoff = convert_duration_to_seconds(self.backoff_duration)
        if self.backoff_max_duration is not None:
            return backoff, convert_duration_to_seconds(self.backoff_max_duration)
        waits = sum(backoff * int(self.backoff_factor) ** k for k in range(self.num_retries))
        return backoff, (self.num_retries + 1) * timeout_seconds + waits


@dataclass(frozen=True)
class Pool:
    """Resources and placement for one kind of task (``gpu``: training; ``cpu``: everything else)."""
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "4Gi"
    memory_limit: str = "8Gi"
    accelerator_count: int = 0
    accelerator_type: str = GPU_RESOURCE
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    shm_size: str | None = None
    """Size limit of the memory-backed ``/dev/shm`` emptyDir (PyTorch data loaders); None: no mount."""
    timeout_seconds: int | None = None
    """Per attempt (the pod's ``activeDeadlineSeconds``)."""
    retry: Retry | None = None
    gpus_per_task: int = 1
    """GPU pool, training tasks: processes per training pod, one per GPU. > 1: the task requests this many GPUs
    (instead of ``accelerator_count``) and runs the training under ``torchrun --standalone --nproc-per-node N``."""
    nodes: int = 1
    """GPU pool, training tasks: > 1 makes each training step create a Kubeflow Trainer ``TrainJob`` of this many
    nodes (pods of ``gpus_per_task`` processes and GPUs each, with this pool's resources and placement) and follow
    it; the step itself then runs on the CPU pool (docs/kubeflow.md, "More than one GPU")."""


@dataclass(frozen=True)
class Trainer:
    """Kubeflow Trainer settings, used when ``gpu.nodes`` > 1."""
    runtime: str = "torch-distributed"
    """The training runtime the TrainJobs reference: by default the ``torch-distributed``
    ClusterTrainingRuntime a Trainer installation ships."""
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    """ClusterTrainingRuntime | TrainingRuntime (a namespaced one, e.g. ``streamguard-torch-distributed`` from
    manifests/components/kubeflow-trainer)."""
    poll_seconds: int = 15
    """How often the step reads its TrainJob's status."""


@dataclass(frozen=True)
class Kubernetes:
    """Cluster settings; absent in the ``local`` profile."""
    secret: str = "streamguard-minio"
    secret_env: dict[str, str] = field(default_factory=lambda: {
        "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY": "MINIO_SECRET_KEY"})
    """Secret key -> environment variable."""
    config_map: str = "streamguard-config"
    config_map_env: dict[str, str] = field(default_factory=lambda: {
        "MINIO_ENDPOINT": "MINIO_ENDPOINT", "MINIO_SECURE": "MINIO_SECURE",
        "STREAMGUARD_STORE": "STREAMGUARD_STORE", "LR_CACHE_TTL_HOURS": "LR_CACHE_TTL_HOURS",
        "STORE_RETRY_BUDGET_S": "STORE_RETRY_BUDGET_S"})
    """ConfigMap key -> environment variable. ``STREAMGUARD_STORE`` (from the cluster's ConfigMap, see
    manifests/) is the store used when the run's ``store_uri`` parameter is empty; ``LR_CACHE_TTL_HOURS`` and
    ``STORE_RETRY_BUDGET_S`` override the config profile (``streamguard.config.ENV_FIELDS``). The ``publish``
    task alone also reads ``MODEL_REGISTRY_URL``, the Model Registry it registers in (empty: none; manifests/
    sets it empty: a ConfigMap made before it has no such key, and the publish pod would not start until
    ``make deploy`` renews it)."""
    preflight_on_gpu: bool = True
    """Run the pre-flight gate on the GPU pool (CUDA image) so that its GPU checks see a GPU."""
    preflight_timeout_seconds: int = 1800
    """The gate's timeout. It is never retried: a failed gate fails the run at once and frees the GPU."""
    allow_cpu_training: bool = False
    """False: GPU-pool tasks get ``STREAMGUARD_REQUIRE_CUDA=1`` and stop at once (exit 4) without a usable
    CUDA device, and pre-flight requires a GPU. True: training may fall back to the CPU."""
    image_pull_policy: str = "Always"
    """``Always`` pulls a rebuilt image pushed under the same tag; ``IfNotPresent``/``Never`` only with
    ``image_digests`` (a node would otherwise keep running the image it pulled first)."""
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets (``kubernetes.io/dockerconfigjson``, in the run namespace) for a private registry."""
    gpu: Pool = field(default_factory=Pool)
    cpu: Pool = field(default_factory=Pool)
    trainer: Trainer = field(default_factory=Trainer)


@dataclass(frozen=True)
class Profile:
    name: str
    registry: str = "ghcr.io/streamguard"
    """Image registry; images are ``{registry}/streamguard-{cpu,cuda}:{package version}``."""
    image_digests: dict[str, str] = field(default_factory=dict)
    """``{cpu: sha256:..., cuda: sha256:...}``: pin the images by digest (``{registry}/streamguard-cpu@sha256:...``)."""
    kubernetes: Kubernetes | None = None
    seed_parallelism: int = 0
    """How many seeds train at once (``dsl.ParallelFor(parallelism=...)``); 0: all. ``local`` uses 1, so a
    2-core laptop runs one seed's transformer and GNN side by side instead of six training processes."""

    def image(self, gpu: bool) -> str:
        from components._image import VERSION

        kind = "cuda" if gpu else "cpu"
        base = f"{self.registry.rstrip('/')}/streamguard-{kind}"
        return f"{base}@{self.image_digests[kind]}" if kind in self.image_digests else f"{base}:{VERSION}"

    def gpu_stages(self) -> tuple[str, ...]:
        """The stages that run on the GPU pool (none for a profile without Kubernetes settings)."""
        if self.kubernetes is None:
            return ()
        return TRAINING_STAGES + (("preflight",) if self.kubernetes.preflight_on_gpu else ())


def profile_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PROFILES_DIR / f"{name_or_path}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load ``pipelines/profiles/NAME.yaml`` (or a YAML file given by path)."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"compile profile {str(name_or_path)!r}: no file {path} "
                           f"(available: {', '.join(available_profiles())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    profile = build(Profile, data, str(path), error=ProfileError)
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: {profile.name!r} must match the file name ({path.stem!r}); "
                           "it names the compiled YAML that `make submit PROFILE=...` uploads")
    for kind, digest in sorted(profile.image_digests.items()):
        if kind not in ("cpu", "cuda") or not digest.startswith("sha256:"):
            raise ProfileError(f"{path}: image_digests.{kind}: {digest!r}: expected cpu/cuda: sha256:<hex>")
    k = profile.kubernetes
    if k is not None:
        if k.gpu.accelerator_count < 1:
            raise ProfileError(f"{path}: kubernetes.gpu.accelerator_count: must be >= 1 for a cluster profile")
        if not k.gpu.node_selector:
            raise ProfileError(f"{path}: kubernetes.gpu.node_selector: empty (the GPU node-pool label is required)")
        if k.cpu.accelerator_count:
            raise ProfileError(f"{path}: kubernetes.cpu.accelerator_count: CPU stages never request a GPU")
        for name in ("gpus_per_task", "nodes"):
            if getattr(k.gpu, name) < 1:
                raise ProfileError(f"{path}: kubernetes.gpu.{name}: {getattr(k.gpu, name)}: must be >= 1")
            if getattr(k.cpu, name) != 1:
                raise ProfileError(f"{path}: kubernetes.cpu.{name}: {getattr(k.cpu, name)}: only the GPU pool's "
                                   "training tasks run distributed; leave it out")
        if not k.trainer.runtime.strip():
            raise ProfileError(f"{path}: kubernetes.trainer.runtime: empty (the training runtime's name)")
        if k.trainer.poll_seconds < 1:
            raise ProfileError(f"{path}: kubernetes.trainer.poll_seconds: {k.trainer.poll_seconds}: must be >= 1")
        if k.image_pull_policy not in PULL_POLICIES:
            raise ProfileError(f"{path}: kubernetes.image_pull_policy: {k.image_pull_policy!r}: expected one of "
                               f"{', '.join(PULL_POLICIES)}")
        if k.image_pull_policy != "Always" and set(profile.image_digests) != {"cpu", "cuda"}:
            raise ProfileError(f"{path}: kubernetes.image_pull_policy: {k.image_pull_policy!r} with mutable tags "
                               "never pulls a rebuilt image; use Always, or pin both images in image_digests")
        if k.preflight_timeout_seconds < 1:
            raise ProfileError(f"{path}: kubernetes.preflight_timeout_seconds: must be >= 1")
        for name, pool in (("gpu", k.gpu), ("cpu", k.cpu)):
            _check_retry(path, f"kubernetes.{name}", pool)
    return profile


def _check_retry(path: Path, where: str, pool: Pool) -> None:
    """A retry must be able to fire for an attempt that runs until its timeout (pipelines/spec_check.py)."""
    r = pool.retry
    if r is None or r.num_retries == 0:
        return
    if r.num_retries < 0:
        raise ProfileError(f"{path}: {where}.retry.num_retries: {r.num_retries}: must be >= 0")
    if not pool.timeout_seconds:
        raise ProfileError(f"{path}: {where}.retry: retries need {where}.timeout_seconds (Argo counts "
                           "backoff_max_duration from the first attempt; without a timeout no bound holds)")
    if not float(r.backoff_factor).is_integer() or r.backoff_factor < 1:
        raise ProfileError(f"{path}: {where}.retry.backoff_factor: {r.backoff_factor}: must be a whole number >= 1 "
                           "(Argo parses the factor as an integer; a fraction stops every retry)")
    try:
        _, max_duration = r.seconds(pool.timeout_seconds)
    except ValueError as e:
        raise ProfileError(f"{path}: {where}.retry: {e}") from None
    need = (r.num_retries + 1) * pool.timeout_seconds
    if max_duration < need:
        raise ProfileError(f"{path}: {where}.retry.backoff_max_duration: {r.backoff_max_duration} = {max_duration}s "
                           f"< (num_retries {r.num_retries} + 1) x timeout_seconds {pool.timeout_seconds} = {need}s: "
                           "a long attempt would never be retried; raise it or leave it out")


def trainjob_template(profile: Profile) -> TrainJobTemplate:
    """The TrainJob a training step of a ``nodes > 1`` profile creates, but for its name and command."""
    k = profile.kubernetes
    g = k.gpu
    return TrainJobTemplate(
        image=profile.image(True), num_nodes=g.nodes, procs_per_node=g.gpus_per_task,
        gpus_per_node=g.gpus_per_task if g.gpus_per_task > 1 else g.accelerator_count,
        accelerator_type=g.accelerator_type, cpu_request=g.cpu_request, cpu_limit=g.cpu_limit,
        memory_request=g.memory_request, memory_limit=g.memory_limit, node_selector=dict(g.node_selector),
        tolerations=tuple(g.tolerations), secret=k.secret, secret_env=dict(k.secret_env), config_map=k.config_map,
        config_map_env=dict(k.config_map_env), env={} if k.allow_cpu_training else {REQUIRE_CUDA_ENV: "1"},
        shm_size=g.shm_size, image_pull_secrets=tuple(k.image_pull_secrets), active_deadline_seconds=g.timeout_seconds,
        runtime=k.trainer.runtime, runtime_kind=k.trainer.runtime_kind, poll_seconds=float(k.trainer.poll_seconds))


def apply(profile: Profile, stage: str, task) -> None:
    """Apply ``profile`` to one pipeline task (``stage``: the component's name).

    Training tasks of a ``gpus_per_task: N`` profile request N GPUs and get ``STREAMGUARD_NPROC_PER_NODE=N``
    (the step runs torchrun); those of a ``nodes: M`` profile only create and follow a TrainJob: they run on
    the CPU pool with the GPU pool's timeout and retries, and carry the TrainJob in ``STREAMGUARD_TRAINJOB``."""
    k = profile.kubernetes
    training = stage in TRAINING_STAGES
    follower = training and k is not None and k.gpu.nodes > 1
    gpu = stage in profile.gpu_stages() and not follower
    task.set_container_image(profile.image((gpu or training) and not follower))
    if stage == "publish":  # lineage: the model card names the image that published it
        task.set_env_variable(IMAGE_ENV, profile.image(False))
    if k is None:
        return
    from kfp import kubernetes

    pool = k.gpu if gpu else k.cpu
    timing = k.gpu if follower else pool  # a follower waits as long as its TrainJob may train
    timeout = k.preflight_timeout_seconds if stage == "preflight" else timing.timeout_seconds
    task.set_cpu_request(pool.cpu_request).set_cpu_limit(pool.cpu_limit)
    task.set_memory_request(pool.memory_request).set_memory_limit(pool.memory_limit)
    gpus = pool.gpus_per_task if training and gpu and pool.gpus_per_task > 1 else pool.accelerator_count
    if gpus:
        task.set_accelerator_type(pool.accelerator_type).set_accelerator_limit(gpus)
    for key, value in pool.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in pool.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
    if pool.shm_size:
        kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path=SHM_PATH, medium="Memory",
                                   size_limit=pool.shm_size)
    if timing.retry and timing.retry.num_retries and stage != "preflight":
        r = timing.retry
        backoff, max_duration = r.seconds(timing.timeout_seconds)
        task.set_retry(num_retries=r.num_retries, backoff_duration=f"{backoff}s",
                       backoff_factor=float(int(r.backoff_factor)), backoff_max_duration=f"{max_duration}s")
    if timeout:
        kubernetes.set_timeout(task, timeout)
    kubernetes.set_image_pull_policy(task, k.image_pull_policy)
    if k.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(k.image_pull_secrets))
    kubernetes.use_secret_as_env(task, secret_name=k.secret, secret_key_to_env=dict(k.secret_env))
    kubernetes.use_config_map_as_env(task, config_map_name=k.config_map, config_map_key_to_env=dict(k.config_map_env))
    if stage == "publish":  # only publish: a training pod never depends on the key (an optional key needs 2.15)
        kubernetes.use_config_map_as_env(task, config_map_name=k.config_map,
                                         config_map_key_to_env={REGISTRY_URL_ENV: REGISTRY_URL_ENV})
    if gpu and not k.allow_cpu_training:
        task.set_env_variable(REQUIRE_CUDA_ENV, "1")
    if training and gpu and pool.gpus_per_task > 1:
        task.set_env_variable(NPROC_ENV, str(pool.gpus_per_task))
    if follower:
        task.set_env_variable(TEMPLATE_ENV, trainjob_template(profile).to_json())
    if stage == "preflight":  # the pre-flight cluster check looks up exactly this Secret and these keys
        task.set_env_variable("STREAMGUARD_SECRET_NAME", k.secret)
        task.set_env_variable("STREAMGUARD_SECRET_KEYS", ",".join(sorted(k.secret_env)))
    if stage == "preflight" and k.gpu.node_selector:
        # the pre-flight cluster check looks for allocatable GPUs in exactly this pool
        task.set_env_variable("STREAMGUARD_GPU_NODE_SELECTOR",
                              ",".join(f"{key}={value}" for key, value in sorted(k.gpu.node_selector.items())))


def configure(profile: Profile) -> Callable[[str, Any], None]:
    """The pipeline's task hook for ``profile`` (see ``pipelines.streamguard_pipeline.build_pipeline``)."""
    return lambda stage, task: apply(profile, stage, task)
