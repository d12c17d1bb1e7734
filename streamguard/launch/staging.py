"""How a multi-node training step and its TrainJob's pods exchange files: through StreamGuard's object store,
which both already reach (the same Secret and ConfigMap). KFP's artifacts live in the step's pod only.

Layout, under ``trainjobs/<TrainJob name>/`` in the store::

    inputs/<name>/...      the step's input directories (data, graphs, transformer, gnn), uploaded by the step
    status/node-<r>.json   each node's exit code, written by the node when its torchrun ends
    outputs/<name>/...     model and result, uploaded by node 0 (it holds global rank 0) after a clean exit
    outputs/COMPLETE.json  written last by node 0: the outputs are whole

The step downloads ``outputs/`` into its output artifacts once the TrainJob is Complete, then deletes the
whole prefix. A failed TrainJob's prefix is kept until the step's next attempt replaces it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from streamguard.storage import ObjectNotFound, ObjectStore, get_json, put_json
from streamguard.storage.tree import delete_tree, get_tree, put_tree

log = logging.getLogger("streamguard.launch")
ROOT = "trainjobs"
COMPLETE = "COMPLETE.json"


def stage_key(name: str) -> str:
    return f"{ROOT}/{name}"


def upload_inputs(store: ObjectStore, stage: str, inputs: dict[str, str]) -> None:
    """Replace whatever an earlier attempt left under ``stage`` with the step's inputs."""
    delete_tree(store, stage)
    for name, path in sorted(inputs.items()):
        n = put_tree(store, f"{stage}/inputs/{name}", path)
        log.info("staged %s (%d files) at %s/%s/inputs/%s", name, n, store.uri, stage, name)


def download_inputs(store: ObjectStore, stage: str, names: list[str], workdir: str) -> None:
    for name in names:
        n = get_tree(store, f"{stage}/inputs/{name}", os.path.join(workdir, name))
        if n == 0:
            from streamguard.errors import UserError

            raise UserError(f"{store.uri}/{stage}/inputs/{name}: nothing staged (was the step's input empty?)")


def write_status(store: ObjectStore, stage: str, node_rank: int, exit_code: int) -> None:
    put_json(store, f"{stage}/status/node-{node_rank}.json",
             {"node_rank": node_rank, "exit_code": exit_code, "host": socket.gethostname(), "time": time.time()})


def read_statuses(store: ObjectStore, stage: str) -> list[dict[str, Any]]:
    """The nodes' statuses, by node rank."""
    out = []
    for key in store.list(f"{stage}/status/"):
        try:
            out.append(get_json(store, key))
        except (ObjectNotFound, ValueError):
            continue
    return sorted(out, key=lambda s: s.get("node_rank", 0))


def upload_outputs(store: ObjectStore, stage: str, outputs: dict[str, str]) -> None:
    for name, path in sorted(outputs.items()):
        put_tree(store, f"{stage}/outputs/{name}", path)
    put_json(store, f"{stage}/outputs/{COMPLETE}", {"outputs": sorted(outputs), "host": socket.gethostname(),
                                                    "time": time.time()})


def download_outputs(store: ObjectStore, stage: str, outputs: dict[str, str]) -> bool:
    """Copy node 0's outputs into ``outputs`` (name -> directory); False when they are not complete."""
    if not store.exists(f"{stage}/outputs/{COMPLETE}"):
        return False
    for name, path in sorted(outputs.items()):
        get_tree(store, f"{stage}/outputs/{name}", path)
    return True


def clear(store: ObjectStore, stage: str) -> None:
    delete_tree(store, stage)
