"""Where this process stands with the Kubernetes API: in a pod or not, its namespace, an API client.

In a pod (KFP runs every step in one) the client uses the service account's token and CA; outside, the
kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) — how tests point a process at an API double.
Used by the pre-flight cluster check and the TrainJob launcher (``streamguard.launch.trainjob``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_reason(environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR) -> str | None:
    """None when this process runs in a Kubernetes pod; else why not."""
    environ = os.environ if environ is None else environ
    if not environ.get("KUBERNETES_SERVICE_HOST"):
        return "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)"
    if not Path(sa_dir, "token").is_file():
        return f"no service-account token at {sa_dir}/token (automountServiceAccountToken off?)"
    return None


def pod_namespace(environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR, default: str = "default") -> str:
    """``$POD_NAMESPACE``, else the service account's namespace, else ``default``."""
    environ = os.environ if environ is None else environ
    ns_file = Path(sa_dir, "namespace")
    return environ.get("POD_NAMESPACE") or (ns_file.read_text().strip() if ns_file.is_file() else default)


def in_cluster_client(environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR) -> Any:
    """A ``kubernetes.client.ApiClient`` with the pod's service-account credentials."""
    from kubernetes import client as k8s
    from kubernetes.config.incluster_config import InClusterConfigLoader

    environ = os.environ if environ is None else environ
    conf = k8s.Configuration()
    InClusterConfigLoader(token_filename=str(Path(sa_dir, "token")), cert_filename=str(Path(sa_dir, "ca.crt")),
                          environ=environ).load_and_set(conf)
    return k8s.ApiClient(conf)


def api_client_and_namespace(environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR) -> tuple[Any, str]:
    """(ApiClient, namespace): in a pod its service account and namespace; else the kubeconfig's current
    context (its namespace unless ``$POD_NAMESPACE`` is set)."""
    environ = os.environ if environ is None else environ
    if in_cluster_reason(environ, sa_dir) is None:
        return in_cluster_client(environ, sa_dir), pod_namespace(environ, sa_dir)
    from kubernetes import config

    path = environ.get("KUBECONFIG") or None  # read now: the client reads $KUBECONFIG once, at import
    _, context = config.list_kube_config_contexts(config_file=path)
    namespace = environ.get("POD_NAMESPACE") or (context or {}).get("context", {}).get("namespace") or "default"
    return config.new_client_from_config(config_file=path), namespace
