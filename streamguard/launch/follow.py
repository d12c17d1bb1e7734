"""The KFP side of a multi-node training step: create the TrainJob, follow it, bring its outputs back.

1. The TrainJob's name is fixed by (run key, family, seed) (``trainjob.trainjob_name``). One that an earlier
   attempt of this step left *running* (the step's pod was preempted, the TrainJob was not) is followed
   again; a finished one is deleted and replaced.
2. The step's input directories are staged in the object store (``staging``), the TrainJob is created
   (``trainjob.trainjob_body``), and its status is read every ``poll_seconds`` (GET, no watch: the Role
   needs only create/get/delete); each change of its conditions or job counts is one line in the step's log.
3. ``Complete``: node 0's outputs are copied into the step's model and result directories and the TrainJob
   and its staging prefix are deleted. ``Failed`` (or the object vanished): the step fails with the first
   failing node's StreamGuard exit code, or 6 (``EXIT_DISTRIBUTED``) when no node recorded one (a pod never
   started, was evicted or killed); the TrainJob is kept for ``kubectl`` until the next attempt replaces it.
4. SIGTERM (KFP/Argo cancelling the run, or the step's own deadline) deletes the TrainJob — its JobSet and
   pods go with it — and exits 143.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from streamguard.errors import DistributedError, UserError
from streamguard.launch import staging
from streamguard.launch.command import TrainCommand
from streamguard.launch.torchrun import STREAMGUARD_CODES
from streamguard.launch.trainjob import (
    GROUP,
    PLURAL,
    VERSION,
    WORKDIR,
    TrainJobTemplate,
    describe,
    finished,
    trainjob_body,
    trainjob_name,
)

log = logging.getLogger("streamguard.launch")
EXIT_CANCELLED = 128 + signal.SIGTERM


class TrainJobs:
    """TrainJobs of one namespace through the Kubernetes API (``CustomObjectsApi``)."""

    def __init__(self, api_client: Any, namespace: str, request_timeout: float = 30.0):
        from kubernetes import client as k8s

        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.timeout = request_timeout
        self._exc = k8s.ApiException

    def _call(self, what: str, fn: Callable[[], Any], missing_ok: bool = False) -> Any:
        try:
            return fn()
        except self._exc as e:
            if missing_ok and e.status == 404:
                return None
            hint = {403: f" (the step's service account needs create/get/delete on {PLURAL}.{GROUP} in "
                         f"{self.namespace}: manifests/components/kubeflow-trainer)",
                    404: f" (is Kubeflow Trainer installed? no {PLURAL}.{GROUP}/{VERSION} API)"}.get(e.status, "")
            raise DistributedError(f"{what} TrainJob in namespace {self.namespace}: {e.status} {e.reason}{hint}") \
                from None

    def get(self, name: str) -> dict[str, Any] | None:
        return self._call(f"reading {name}:", lambda: self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=self.timeout), missing_ok=True)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"creating {body['metadata']['name']}:", lambda: self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=self.timeout))

    def delete(self, name: str) -> None:
        """Delete ``name`` and, in the foreground, its JobSet and pods (absent: nothing to do)."""
        self._call(f"deleting {name}:", lambda: self.api.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground",
            _request_timeout=self.timeout), missing_ok=True)

    def wait_gone(self, name: str, timeout_s: float, poll_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.get(name) is not None:
            if time.monotonic() > deadline:
                raise DistributedError(f"TrainJob {self.namespace}/{name} still exists {timeout_s:.0f} s after "
                                       "it was deleted (finalizers?)")
            time.sleep(poll_s)


@contextmanager
def deleted_on_cancel(jobs: TrainJobs, name: str) -> Iterator[None]:
    """While inside: SIGTERM/SIGINT delete the TrainJob and exit 128 + the signal (KFP cancels with SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum, _frame):
        print(f"streamguard: signal {signum}: the step is cancelled; deleting TrainJob {jobs.namespace}/{name}",
              file=sys.stderr, flush=True)
        try:
            jobs.delete(name)
        except Exception as e:  # still exit: the pod is going away
            print(f"streamguard: error: could not delete TrainJob {jobs.namespace}/{name}: {e}", file=sys.stderr,
                  flush=True)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, cancel) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def follow(jobs: TrainJobs, name: str, poll_s: float) -> dict[str, Any]:
    """Read the TrainJob until it has finished; log every change; return its last state."""
    last = None
    while True:
        obj = jobs.get(name)
        if obj is None:
            raise DistributedError(f"TrainJob {jobs.namespace}/{name} was deleted before it finished")
        line = describe(obj)
        if line != last:
            log.info("TrainJob %s/%s: %s", jobs.namespace, name, line)
            last = line
        if finished(obj):
            return obj
        time.sleep(poll_s)


def failure_exit_code(statuses: list[dict[str, Any]]) -> tuple[int, str]:
    """(exit code, why) for a failed TrainJob from its nodes' recorded exit codes (node 0 first)."""
    for s in statuses:
        code = s.get("exit_code")
        if isinstance(code, int) and code != 0:
            passed = code if code in STREAMGUARD_CODES else DistributedError.exit_code
            return passed, f"node {s.get('node_rank')} ({s.get('host')}) exited with {code}"
    return DistributedError.exit_code, ("no node recorded a failing exit code (a pod did not start, was evicted, "
                                        "or was killed)")


def run_trainjob(template: TrainJobTemplate, cmd: TrainCommand, *, store: Any, jobs: TrainJobs,
                 python: str = "python") -> None:
    """Run ``cmd`` as a TrainJob of ``template.num_nodes`` nodes; its outputs land in ``cmd.outputs``."""
    if not store.uri.startswith("s3://"):
        raise UserError(f"store {store.uri!r}: a TrainJob's pods reach the step's files only through an s3:// "
                        "store; give store_uri=s3://... or set STREAMGUARD_STORE in the ConfigMap")
    name = trainjob_name(cmd.run_key, cmd.family, cmd.seed)
    stage = staging.stage_key(name)
    where = f"{jobs.namespace}/{name}"
    existing = jobs.get(name)
    body = None
    if existing is not None and not finished(existing):
        log.info("TrainJob %s: left running by an earlier attempt of this step; following it", where)
    else:
        if existing is not None:
            log.info("TrainJob %s: replacing the %s one an earlier attempt left", where, finished(existing))
            jobs.delete(name)
            jobs.wait_gone(name, timeout_s=600, poll_s=template.poll_seconds)
        staging.upload_inputs(store, stage, cmd.inputs)
        node = cmd.moved(WORKDIR)
        command = [python, "-m", "streamguard.launch", "node", "--store", store.uri, "--stage", stage,
                   "--workdir", WORKDIR, "--inputs", ",".join(sorted(node.inputs)),
                   "--outputs", ",".join(sorted(node.outputs)), "--", "-m", "streamguard", *node.argv()]
        body = trainjob_body(template, name, jobs.namespace, command,
                             labels={"streamguard.io/trainjob": name, "streamguard.io/family": cmd.family,
                                     "streamguard.io/seed": str(cmd.seed)},
                             annotations={"streamguard.io/run-key": cmd.run_key})
    with deleted_on_cancel(jobs, name):
        if body is not None:
            jobs.create(body)
            log.info("TrainJob %s created: %d node(s) x %d process(es), runtime %s %s", where, template.num_nodes,
                     template.procs_per_node, template.runtime_kind, template.runtime)
        obj = follow(jobs, name, template.poll_seconds)
    if finished(obj) == "Complete":
        if not staging.download_outputs(store, stage, cmd.outputs):
            raise DistributedError(f"TrainJob {where} completed but node 0 left no complete outputs under "
                                   f"{store.uri}/{stage}/outputs")
        jobs.delete(name)
        staging.clear(store, stage)
        log.info("TrainJob %s: outputs copied into the step's artifacts; TrainJob deleted", where)
        return
    code, why = failure_exit_code(staging.read_statuses(store, stage))
    raise DistributedError(f"TrainJob {where} failed ({describe(obj)}); {why}; kept for `kubectl -n "
                           f"{jobs.namespace} describe trainjob {name}`", exit_code=code)
