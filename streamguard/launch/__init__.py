"""How a training step runs its training: in this process, under ``torchrun`` in this pod, or as a Kubeflow
Trainer ``TrainJob`` over several nodes — decided by the compile profile, through the task's environment.

* nothing set (every profile with ``gpus_per_task: 1, nodes: 1``, and ``kfp.local``): the step's own
  function runs here, as before;
* ``STREAMGUARD_NPROC_PER_NODE=N`` (``gpus_per_task: N``, the task requests N GPUs): the step runs
  ``python -m streamguard.launch torchrun --standalone --nproc-per-node N -m streamguard train-<family> ...``
  (torch's launcher, ``streamguard.launch.torchrun``) with the step's directories and parameters, waits for it,
  and reads the model card rank 0 wrote into the result directory; a worker's failure is the step's exit code;
* ``STREAMGUARD_TRAINJOB=<json>`` (``nodes: M``): the step creates and follows a TrainJob running the same
  command on M nodes (``streamguard.launch.follow``), its files going through the object store.

The training command line (``streamguard train-<family>``) is the only interface to the training: the
engine's own distributed support (rank 0 writes; ``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)
is what the workers run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from streamguard.errors import DistributedError, UserError

if TYPE_CHECKING:
    from streamguard.launch.command import TrainCommand

NPROC_ENV = "STREAMGUARD_NPROC_PER_NODE"


def nproc_from_env(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(NPROC_ENV, "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"environment {NPROC_ENV}={raw!r}: expected a whole number >= 1 (processes per pod)")
    return n


def command_for(family: str, *, seed: int, profile: str, overrides: dict | None, store_uri: str, run_key: str,
                **dirs: Any) -> "TrainCommand":
    """The ``streamguard train-<family>`` command of a training step; ``dirs``: its artifacts (objects with a
    ``.path``, or paths; None: not an input of this family)."""
    from streamguard.launch.command import TrainCommand

    paths = {k: getattr(v, "path", v) for k, v in dirs.items() if v is not None}
    return TrainCommand(family=family, seed=int(seed), dirs={k: str(v) for k, v in paths.items()},
                        profile=profile, overrides=dict(overrides or {}), store=store_uri or "", run_key=run_key or "")


def read_card(cmd: "TrainCommand") -> dict[str, Any]:
    from streamguard.jsonio import read_json

    card = Path(cmd.dirs["result"]) / "model_card.json"
    if not card.is_file():
        raise DistributedError(f"{card}: rank 0 of train-{cmd.family} exited 0 but wrote no model card")
    return read_json(card)


def run_standalone(cmd: "TrainCommand", nproc: int) -> dict[str, Any]:
    """``torchrun --standalone --nproc-per-node nproc`` of ``cmd`` in this pod; the model card rank 0 wrote."""
    import logging

    from streamguard.launch.command import standalone_argv
    from streamguard.launch.torchrun import run_child

    argv = standalone_argv(nproc, cmd)
    logging.getLogger("streamguard.launch").info("running %s", " ".join(argv))
    rc = run_child(argv)
    if rc != 0:
        raise DistributedError(f"torchrun --nproc-per-node {nproc} of streamguard train-{cmd.family} failed "
                               f"(exit {rc}; the failing rank's error is above)", exit_code=rc)
    return read_card(cmd)


def run_multinode(cmd: "TrainCommand", template_json: str) -> dict[str, Any]:
    """``cmd`` as a TrainJob (``streamguard.launch.follow``); the model card node 0 wrote."""
    from streamguard.config import load_config
    from streamguard.kube import api_client_and_namespace
    from streamguard.launch.follow import TrainJobs, run_trainjob
    from streamguard.launch.trainjob import TrainJobTemplate
    from streamguard.storage import open_store

    template = TrainJobTemplate.from_json(template_json)
    cfg = load_config(cmd.profile, cmd.overrides)  # a bad config fails here, before any TrainJob exists
    store = open_store(cmd.store or None, cfg.store)
    try:
        client, namespace = api_client_and_namespace()
    except Exception as e:  # no pod service account and no kubeconfig
        raise DistributedError(f"nodes > 1 needs the Kubernetes API: {e}") from None
    run_trainjob(template, cmd, store=store, jobs=TrainJobs(client, namespace))
    return read_card(cmd)


def launched(go: Callable[[], dict[str, Any]], family: str, *, environ: Mapping[str, str] | None = None,
             **step: Any) -> Callable[[], dict[str, Any]]:
    """A function that runs ``go`` (train here) unless the environment asks for torchrun or a TrainJob, and
    then runs the same training that way. ``step``: the training step's arguments (``command_for``).
    It returns the model card."""

    def run() -> dict[str, Any]:
        from streamguard.launch.trainjob import TEMPLATE_ENV

        env = os.environ if environ is None else environ
        template = env.get(TEMPLATE_ENV, "").strip()
        if template:
            return run_multinode(command_for(family, **step), template)
        nproc = nproc_from_env(env)
        if nproc > 1:
            return run_standalone(command_for(family, **step), nproc)
        return go()

    return run
