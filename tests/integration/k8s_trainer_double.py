"""A stand-in for the Kubernetes API and the Kubeflow Trainer controller, for TrainJob launcher tests.

An HTTP server on 127.0.0.1 answering the CustomObjects endpoints the ``kubernetes`` client calls for
``trainer.kubeflow.org/v1alpha1`` TrainJobs — POST (create; 409 when the name exists), GET (read; 404 when
absent) and DELETE (gone at once; the nodes' processes are killed) — recording every request with its query
and body. What a created TrainJob then does is ``mode``:

* ``run``: as the Trainer's torch plugin and a node pool would — each of ``numNodes`` nodes is a local process
  running the TrainJob's command with its ``env`` (Secret and ConfigMap references resolved from ``secrets`` /
  ``config_maps``; a missing one fails the TrainJob as a pod stuck in CreateContainerConfigError would) and the
  ``PET_*`` variables (nodes, processes per node, node rank, master 127.0.0.1 and a free port), in a directory
  of its own that stands for the node's ``/streamguard-work`` volume; ``python`` is this interpreter. Status:
  the node job counts while running, then ``Complete`` (every node exited 0) or ``Failed``, with JobSet's
  reasons;
* ``fail``: ``Failed`` at once with ``reason``/``message`` (a node that never ran StreamGuard: an image that
  cannot be pulled, an eviction);
* ``hang``: running until deleted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.http_double import HTTPRequest, JSONServer

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"
WORKDIR = "/streamguard-work"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class TrainerDouble:
    root: Path
    mode: str = "run"
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    reason: str = "FailedJobs"
    message: str = "jobset failed due to one or more job failures"
    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    procs: dict[tuple[str, str], list[subprocess.Popen]] = field(default_factory=dict)

    def __post_init__(self):
        self.lock = threading.RLock()
        self.server = JSONServer(self._serve)

    def _serve(self, req: HTTPRequest) -> tuple[int, Any]:
        body = req.json()
        self.requests.append(Request(req.method, req.path, req.query, body))
        return self.handle(req.method, req.path, body)

    # --- the test's side -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "TrainerDouble":
        self.server.start()
        return self

    def stop(self) -> None:
        with self.lock:
            for procs in self.procs.values():
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
        self.server.stop()

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "u", "user": {"token": "test-token"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u", "namespace": namespace}}]}))
        return path

    def calls(self, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if method is None or r.method == method]

    def seed(self, namespace: str, name: str, conditions: list[dict] | None = None) -> None:
        """An existing TrainJob (left by an earlier attempt)."""
        self.objects[(namespace, name)] = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                                           "metadata": {"name": name, "namespace": namespace, "uid": "old"},
                                           "spec": {}, "status": {"conditions": conditions or []}}

    def set_conditions(self, namespace: str, name: str, conditions: list[dict]) -> None:
        with self.lock:
            self.objects[(namespace, name)]["status"]["conditions"] = conditions

    def node_dir(self, name: str, rank: int) -> Path:
        return self.root / name / f"node-{rank}"

    # --- the API server's side -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if not path.startswith(PREFIX):
            return 404, _status(404, "NotFound", f"no route {path}")
        parts = path[len(PREFIX):].split("/")
        if len(parts) < 2 or parts[1] != "trainjobs":
            return 404, _status(404, "NotFound", f"no route {path}")
        ns, name = parts[0], (parts[2] if len(parts) > 2 else None)
        with self.lock:
            if method == "POST" and name is None:
                key = (ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, _status(409, "AlreadyExists",
                                        f'trainjobs.trainer.kubeflow.org "{key[1]}" already exists')
                obj = json.loads(json.dumps(body))
                obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1")
                obj["status"] = {}
                self.objects[key] = obj
                if self.mode == "run":
                    self._start_nodes(key, obj)
                elif self.mode == "fail":
                    obj["status"]["conditions"] = [_cond("Failed", self.reason, self.message)]
                return 201, obj
            if name is None:
                return 405, _status(405, "MethodNotAllowed", method)
            key = (ns, name)
            if key not in self.objects:
                return 404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
            if method == "GET":
                self._refresh(key)
                return 200, self.objects[key]
            if method == "DELETE":
                for p in self.procs.pop(key, []):
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                del self.objects[key]
                return 200, _status(200, "Success", "deleted")
        return 405, _status(405, "MethodNotAllowed", method)

    def _start_nodes(self, key: tuple[str, str], obj: dict) -> None:
        trainer = obj["spec"]["trainer"]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MINIO_", "STREAMGUARD_", "PET_", "KUBE")) and k != "POD_NAMESPACE"}
        for e in trainer.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            ref = e["valueFrom"].get("secretKeyRef") or e["valueFrom"]["configMapKeyRef"]
            source = self.secrets if "secretKeyRef" in e["valueFrom"] else self.config_maps
            if ref["key"] not in source.get(ref["name"], {}):
                obj["status"]["conditions"] = [_cond("Failed", "FailedJobs", f"CreateContainerConfigError: "
                                                     f"couldn't find key {ref['key']} in {ref['name']}")]
                return
            env[e["name"]] = source[ref["name"]][ref["key"]]
        nodes, port = int(trainer.get("numNodes", 1)), _free_port()
        procs = []
        for rank in range(nodes):
            workdir = self.node_dir(key[1], rank)
            workdir.mkdir(parents=True, exist_ok=True)
            command = [sys.executable if c == "python" else c.replace(WORKDIR, str(workdir))
                       for c in trainer["command"]]
            node_env = {**env, "PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
                        "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port),
                        "OMP_NUM_THREADS": "1"}
            log = open(workdir.parent / f"node-{rank}.log", "wb")
            procs.append(subprocess.Popen(command, env=node_env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT))
        self.procs[key] = procs

    def _refresh(self, key: tuple[str, str]) -> None:
        procs = self.procs.get(key)
        if not procs:
            return
        obj = self.objects[key]
        codes = [p.poll() for p in procs]
        running = sum(c is None for c in codes)
        obj["status"]["jobsStatus"] = [{"name": "node", "active": running, "ready": running,
                                        "succeeded": sum(c == 0 for c in codes),
                                        "failed": sum(c not in (None, 0) for c in codes), "suspended": 0}]
        if any(c not in (None, 0) for c in codes):
            for p in procs:  # JobSet's failure policy: one failed job fails the set, the others are stopped
                if p.poll() is None:
                    p.kill()
            obj["status"]["conditions"] = [_cond("Failed", "FailedJobs", "jobset failed due to one or more job "
                                                                         "failures")]
        elif running == 0:
            obj["status"]["conditions"] = [_cond("Complete", "AllJobsCompleted", "jobset completed successfully")]

    def log(self, name: str, rank: int) -> str:
        p = self.root / name / f"node-{rank}.log"
        return p.read_text(errors="replace") if p.exists() else ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _cond(kind: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": _now()}


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason, "code": code}
