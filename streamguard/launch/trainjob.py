"""The Kubeflow Trainer v2 ``TrainJob`` a multi-node training step creates (``trainer.kubeflow.org/v1alpha1``;
schema: the CRD of Trainer v2.3.0, vendored in tests/fixtures/trainer/).

The compile profile (``pipelines/platform.py``) writes a ``TrainJobTemplate`` — image, nodes, processes and
resources per node, placement, the Secret/ConfigMap keys every pod reads — as JSON into the training task's
``STREAMGUARD_TRAINJOB`` environment variable; at run time ``trainjob_body`` adds the name, namespace and the
command. What the TrainJob API cannot say is patched into the runtime's ``node`` pods through
``runtimePatches`` (the only pod-level overrides the v2.2+ CRD allows): node selector, tolerations, volumes
(a memory-backed ``/dev/shm`` and a scratch directory), image pull secrets, a non-root security context and
no Istio sidecar (a sidecar would keep a finished node's Job running).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
NODE_CONTAINER = "node"
"""The trainer container and replicated job of the ``torch-distributed`` runtime (Trainer's ``constants.Node``)."""
PATCH_MANAGER = "streamguard.io/launcher"
WORKDIR = "/streamguard-work"
"""Where a node keeps its copy of the step's inputs and outputs (an emptyDir)."""
WORK_VOLUME = "streamguard-work"
SHM_VOLUME = "dshm"
GPU_RESOURCE = "nvidia.com/gpu"
TEMPLATE_ENV = "STREAMGUARD_TRAINJOB"
"""The training task's environment variable holding the ``TrainJobTemplate`` JSON (set by the compile profile)."""


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration (compile profiles: ``kfp.kubernetes.add_toleration``; TrainJobs: the nodes' pods)."""
    key: str = GPU_RESOURCE
    operator: Literal["Exists", "Equal"] = "Exists"
    """Exists (any value of ``key``) | Equal (``value`` must match)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"
    """The taint effect tolerated: NoSchedule | PreferNoSchedule | NoExecute."""
    value: str | None = None

    def to_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator, "effect": self.effect}
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class TrainJobTemplate:
    """Everything of a step's TrainJob but its name, namespace and command (written at compile time)."""
    image: str
    num_nodes: int
    procs_per_node: int
    gpus_per_node: int
    accelerator_type: str = GPU_RESOURCE
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    secret: str = ""
    secret_env: dict[str, str] = field(default_factory=dict)
    """Secret key -> environment variable (``valueFrom.secretKeyRef``)."""
    config_map: str = ""
    config_map_env: dict[str, str] = field(default_factory=dict)
    """ConfigMap key -> environment variable (``valueFrom.configMapKeyRef``)."""
    env: dict[str, str] = field(default_factory=dict)
    """Plain environment variables (e.g. ``STREAMGUARD_REQUIRE_CUDA``)."""
    shm_size: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    active_deadline_seconds: int | None = None
    runtime: str = "torch-distributed"
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    poll_seconds: float = 15.0
    """How often the step reads the TrainJob's status."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str = TEMPLATE_ENV) -> "TrainJobTemplate":
        from streamguard.errors import UserError
        from streamguard.typed import build

        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e})") from None
        t = build(cls, data, where)
        for name in ("num_nodes", "procs_per_node", "gpus_per_node"):
            if getattr(t, name) < (0 if name == "gpus_per_node" else 1):
                raise UserError(f"{where}.{name}: {getattr(t, name)}: must be >= 1")
        return t


def trainjob_name(run_key: str, family: str, seed: int) -> str:
    """``sg-<family>-<seed>-<hash of the run key>``: the same for every attempt of one step (so a retry finds
    the TrainJob an earlier attempt left), different across runs; an RFC 1035 label of at most 40 characters
    (the TrainJob name is also its JobSet's and prefixes the node pods' host names, ≤ 63)."""
    digest = hashlib.sha256((run_key or uuid.uuid4().hex).encode()).hexdigest()[:8]
    seed_part = str(seed).replace("-", "m")
    return f"sg-{family}-{seed_part}-{digest}"[:40].rstrip("-")


def _env(t: TrainJobTemplate) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": v, "valueFrom": {"secretKeyRef": {"name": t.secret, "key": k}}}
                                 for k, v in sorted(t.secret_env.items())]
    env += [{"name": v, "valueFrom": {"configMapKeyRef": {"name": t.config_map, "key": k}}}
            for k, v in sorted(t.config_map_env.items())]
    env += [{"name": k, "value": v} for k, v in sorted(t.env.items())]
    return env


def _resources(t: TrainJobTemplate) -> dict[str, dict[str, str]]:
    requests = {k: v for k, v in (("cpu", t.cpu_request), ("memory", t.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", t.cpu_limit), ("memory", t.memory_limit)) if v}
    if t.gpus_per_node:
        requests[t.accelerator_type] = limits[t.accelerator_type] = str(t.gpus_per_node)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _pod_patch(t: TrainJobTemplate, labels: dict[str, str]) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": WORK_VOLUME, "emptyDir": {}}]
    mounts = [{"name": WORK_VOLUME, "mountPath": WORKDIR}]
    if t.shm_size:
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": t.shm_size}})
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    spec: dict[str, Any] = {
        "volumes": volumes,
        "containers": [{"name": NODE_CONTAINER, "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if t.node_selector:
        spec["nodeSelector"] = dict(t.node_selector)
    if t.tolerations:
        spec["tolerations"] = [x.to_k8s() for x in t.tolerations]
    if t.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in t.image_pull_secrets]
    return {"metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}}, "spec": spec}


def trainjob_body(t: TrainJobTemplate, name: str, namespace: str, command: list[str],
                  labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The TrainJob object to create."""
    labels = {"app.kubernetes.io/part-of": "streamguard", "app.kubernetes.io/managed-by": "streamguard",
              **(labels or {})}
    trainer: dict[str, Any] = {"image": t.image, "command": list(command), "env": _env(t), "numNodes": t.num_nodes,
                               "numProcPerNode": t.procs_per_node}
    resources = _resources(t)
    if resources:
        trainer["resourcesPerNode"] = resources
    spec: dict[str, Any] = {
        "runtimeRef": {"name": t.runtime, "apiGroup": GROUP, "kind": t.runtime_kind},
        "trainer": trainer,
        "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": NODE_CONTAINER, "template": {"spec": {
                "template": _pod_patch(t, labels)}}}]}}}}],
    }
    if t.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = t.active_deadline_seconds
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": meta, "spec": spec}


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def finished(obj: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once the TrainJob has finished (that condition is True), else None."""
    for kind in ("Failed", "Complete"):
        c = condition(obj, kind)
        if c and c.get("status") == "True":
            return kind
    return None


def describe(obj: dict[str, Any]) -> str:
    """One line: each condition (type=status reason: message) and each replicated job's counts."""
    status = obj.get("status") or {}
    parts = [f"{c.get('type')}={c.get('status')}" + (f" {c['reason']}" if c.get("reason") else "")
             + (f": {c['message']}" if c.get("message") else "") for c in status.get("conditions") or []]
    for j in status.get("jobsStatus") or []:
        counts = ", ".join(f"{k} {j[k]}" for k in ("active", "ready", "succeeded", "failed", "suspended") if j.get(k))
        parts.append(f"jobs {j.get('name')}: {counts or 'none yet'}")
    return "; ".join(parts) or "no status yet (waiting for the Trainer controller)"
