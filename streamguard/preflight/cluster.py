"""The ``cluster`` check: the GPU pool and the credentials Secret, through the Kubernetes API.

Only in a pod (``KUBERNETES_SERVICE_HOST`` and a service-account token; otherwise *skip* with the reason): nodes
matching the GPU pool's node selector with allocatable ``nvidia.com/gpu``, and the credentials Secret with its keys.
The compile profile (``pipelines/platform.py``) tells the pre-flight task which pool and which Secret:
``$STREAMGUARD_GPU_NODE_SELECTOR`` (``k=v,...``), ``$STREAMGUARD_SECRET_NAME`` and ``$STREAMGUARD_SECRET_KEYS``
(comma-separated); without them the check looks for any GPU node and for today's names.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from streamguard.errors import UserError
from streamguard.kube import SA_DIR, in_cluster_client, in_cluster_reason, pod_namespace
from streamguard.preflight.result import CheckResult, run_check

GPU_RESOURCE = "nvidia.com/gpu"
SECRET_NAME = "streamguard-minio"
SECRET_KEYS = ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
NODE_SELECTOR_ENV = "STREAMGUARD_GPU_NODE_SELECTOR"
SECRET_NAME_ENV = "STREAMGUARD_SECRET_NAME"
SECRET_KEYS_ENV = "STREAMGUARD_SECRET_KEYS"


def parse_node_selector(text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> dict (the form of ``$STREAMGUARD_GPU_NODE_SELECTOR``)."""
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                raise UserError(f"node selector {text!r}: expected key=value[,key=value]")
            out[k.strip()] = v.strip()
    return out


def secret_settings(environ: Mapping[str, str], name: str | None = None,
                    keys: Sequence[str] | None = None) -> tuple[str, tuple[str, ...]]:
    """The Secret to look up and the keys it must hold: as given, else from the environment the compile profile
    sets (``$STREAMGUARD_SECRET_NAME``, ``$STREAMGUARD_SECRET_KEYS``), else ``streamguard-minio`` and the MinIO pair."""
    name = name or environ.get(SECRET_NAME_ENV, "").strip() or SECRET_NAME
    if keys is None:
        keys = [k.strip() for k in environ.get(SECRET_KEYS_ENV, "").split(",") if k.strip()] or SECRET_KEYS
    return name, tuple(keys)


def _quantity(v: Any) -> float:
    try:
        return float(str(v))
    except ValueError:
        return 0.0


def _gpu_pool(api, node_selector: Mapping[str, str], require_gpu: bool, request_timeout: float, vals: dict,
              problems: list[str], warnings: list[str]) -> None:
    """Ready, schedulable nodes matching ``node_selector`` with allocatable GPUs (into ``vals``)."""
    from kubernetes import client as k8s

    try:
        nodes = api.list_node(_request_timeout=request_timeout).items
    except k8s.ApiException as e:
        (warnings if e.status in (401, 403) else problems).append(
            f"cannot list nodes ({e.status} {e.reason})"
            + ("; the service account needs a ClusterRole with nodes: list to check the GPU pool"
               if e.status == 403 else ""))
        return
    pool, gpu_nodes = [], []
    for n in nodes:
        labels = n.metadata.labels or {}
        if all(labels.get(k) == v for k, v in node_selector.items()):
            alloc = _quantity((n.status.allocatable or {}).get(GPU_RESOURCE, 0)) if n.status else 0.0
            ready = any(c.type == "Ready" and c.status == "True"
                        for c in ((n.status and n.status.conditions) or []))
            schedulable = not (n.spec and n.spec.unschedulable)
            pool.append(n.metadata.name)
            if alloc > 0 and ready and schedulable:
                gpu_nodes.append({"name": n.metadata.name, "gpus": alloc})
    vals.update(nodes_total=len(nodes), nodes_matching_selector=len(pool),
                gpu_nodes=gpu_nodes, gpus_allocatable=sum(g["gpus"] for g in gpu_nodes))
    if not gpu_nodes:
        sel = ",".join(f"{k}={v}" for k, v in node_selector.items()) or "(any node)"
        what = (f"no Ready node matching {sel} has allocatable {GPU_RESOURCE} "
                f"({len(pool)} of {len(nodes)} nodes match the selector)")
        (problems if require_gpu else warnings).append(what)


def _secret(api, namespace: str, name: str, keys: Sequence[str], request_timeout: float, vals: dict,
            problems: list[str], warnings: list[str]) -> None:
    """The Secret ``namespace/name`` holds ``keys`` (their names into ``vals``, never their values)."""
    from kubernetes import client as k8s

    try:
        sec = api.read_namespaced_secret(name, namespace, _request_timeout=request_timeout)
        vals["secret_keys"] = sorted((sec.data or {}).keys())  # key names only, never values
        missing = [k for k in keys if k not in (sec.data or {})]
        if missing:
            problems.append(f"Secret {namespace}/{name} lacks key(s) {', '.join(missing)}")
    except k8s.ApiException as e:
        if e.status == 404:
            problems.append(f"Secret {namespace}/{name} not found (see manifests/base/secret.env.example)")
        else:
            warnings.append(f"cannot read Secret {namespace}/{name} ({e.status} {e.reason})")


def check_cluster(*, require_gpu: bool = False, node_selector: Mapping[str, str] | None = None,
                  namespace: str | None = None, secret_name: str | None = None,
                  secret_keys: Sequence[str] | None = None, api_client: Any = None,
                  environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR,
                  request_timeout: float = 10.0) -> CheckResult:
    """GPU nodes of the target pool and the credentials Secret, through the Kubernetes API.

    ``api_client`` (a ``kubernetes.client.ApiClient``) is used as given (tests
    point one at an API double); otherwise the check runs only in a pod, with the
    in-cluster config. ``node_selector`` default: ``$STREAMGUARD_GPU_NODE_SELECTOR``
    (``k=v,...``), else any node with allocatable ``nvidia.com/gpu``.
    ``namespace`` default: ``$POD_NAMESPACE``, else the service account's.
    ``secret_name`` / ``secret_keys`` default: see :func:`secret_settings`.
    Missing matching GPU nodes fail when ``require_gpu``, warn otherwise; an API
    that refuses to list nodes (403: the pipeline's Role has no cluster-wide
    ``nodes: list``) is a warning; a missing Secret or key fails.
    """
    environ = os.environ if environ is None else environ
    from kubernetes import client as k8s

    if api_client is None:
        why = in_cluster_reason(environ, sa_dir)
        if why:
            return CheckResult("cluster", "skip", why, {"in_cluster": False}, required=False)
        api_client = in_cluster_client(environ, sa_dir)
    if node_selector is None:
        node_selector = parse_node_selector(environ.get(NODE_SELECTOR_ENV))
    if namespace is None:
        namespace = pod_namespace(environ, sa_dir)
    secret_name, secret_keys = secret_settings(environ, secret_name, secret_keys)
    api = k8s.CoreV1Api(api_client)
    vals: dict[str, Any] = {"in_cluster": True, "node_selector": dict(node_selector), "namespace": namespace,
                            "secret": secret_name, "host": api_client.configuration.host}
    problems: list[str] = []
    warnings: list[str] = []
    _gpu_pool(api, node_selector, require_gpu, request_timeout, vals, problems, warnings)
    _secret(api, namespace, secret_name, secret_keys, request_timeout, vals, problems, warnings)
    status = "fail" if problems else "warn" if warnings else "pass"
    if status == "pass":
        msg = (f"{len(vals['gpu_nodes'])} GPU node(s), {vals['gpus_allocatable']:g} allocatable {GPU_RESOURCE}; "
               f"Secret {namespace}/{secret_name} present")
    else:
        msg = "; ".join(problems + warnings)
    return CheckResult("cluster", status, msg, vals)


def run(gate) -> list[CheckResult]:
    o = gate.options
    return [run_check("cluster", lambda: check_cluster(
        require_gpu=gate.require_gpu, node_selector=o.node_selector, namespace=o.namespace,
        secret_name=o.secret_name, secret_keys=o.secret_keys, api_client=o.k8s_api_client))]
