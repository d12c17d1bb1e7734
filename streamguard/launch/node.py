"""One node of a multi-node TrainJob: ``python -m streamguard.launch node --store S --stage K --workdir W
--inputs data,graphs --outputs model,result -- -m streamguard train-<family> ...``.

Downloads the step's staged inputs into ``W`` (``streamguard.launch.staging``), runs the program under torch's
launcher with the node's ``PET_*`` environment (set by the Trainer's torch plugin: nodes, processes per node,
node rank, master address and port), records its exit code in the store and, on node 0 after a clean exit,
uploads the outputs. Exits with the program's code (``streamguard.launch.torchrun``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from streamguard.errors import StreamGuardError
from streamguard.launch import staging
from streamguard.launch.command import torchrun_argv
from streamguard.launch.torchrun import run_child
from streamguard.storage import open_store

log = logging.getLogger("streamguard.launch")


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m streamguard.launch node",
                                 description="Run one node of a StreamGuard TrainJob.")
    ap.add_argument("--store", required=True, help="object store URI shared with the step (s3://bucket/prefix)")
    ap.add_argument("--stage", required=True, help="the TrainJob's key prefix in the store (trainjobs/<name>)")
    ap.add_argument("--workdir", required=True, help="local directory for the inputs and outputs")
    ap.add_argument("--inputs", default="", help="comma-separated input names staged by the step")
    ap.add_argument("--outputs", default="", help="comma-separated output names node 0 uploads")
    ap.add_argument("program", nargs=argparse.REMAINDER, help="after --: what torchrun runs (-m streamguard ...)")
    args = ap.parse_args(argv)
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        ap.error("nothing to run: give the program after --")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    rank = int(os.environ.get("PET_NODE_RANK", "0"))
    inputs = [n for n in args.inputs.split(",") if n]
    outputs = {n: os.path.join(args.workdir, n) for n in args.outputs.split(",") if n}
    try:
        store = open_store(args.store)
    except StreamGuardError as e:
        print(f"streamguard: error: node {rank}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    rc = _run(store, args, rank, inputs, outputs)
    try:
        staging.write_status(store, args.stage, rank, rc)
    except StreamGuardError as e:
        print(f"streamguard: error: node {rank}: recording exit code {rc}: {e}", file=sys.stderr, flush=True)
    return rc


def _run(store, args: argparse.Namespace, rank: int, inputs: list[str], outputs: dict[str, str]) -> int:
    """Inputs in, the program under torchrun, outputs out (node 0); the exit code."""
    try:
        staging.download_inputs(store, args.stage, inputs, args.workdir)
    except StreamGuardError as e:
        print(f"streamguard: error: node {rank}: staged inputs: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    for path in outputs.values():
        os.makedirs(path, exist_ok=True)
    log.info("node %d of %s: running %s", rank, os.environ.get("PET_NNODES", "1"), " ".join(args.program))
    rc = run_child(torchrun_argv([], args.program))
    if rc == 0 and rank == 0:
        try:
            staging.upload_outputs(store, args.stage, outputs)
        except StreamGuardError as e:
            print(f"streamguard: error: node 0: uploading the outputs: {e}", file=sys.stderr, flush=True)
            return e.exit_code
        log.info("node 0: outputs %s uploaded to %s/%s/outputs", ", ".join(outputs), store.uri, args.stage)
    return rc
