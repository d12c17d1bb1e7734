"""Data-parallel training on the CPU: 2 processes (torchrun, gloo) vs 1 process at the same global batch.

Prints one ``name: value`` line per figure (ratios end in ``ratio``):

* model and data: the GNN at the demo profile's size (hidden 96, 3 GINE layers, global batch 32) on program
  graphs built by the real graph builder from synthetic demo functions (``--train`` of them);
* both runs go through the one engine (``engine._Run``: the same set-up, shard, loss, step, monitor as
  ``fit``), the LR fixed, no checkpoints; only ``train_epoch`` is timed (after a barrier, so start-up,
  process-group rendezvous, validation and the export are excluded), the first epoch is a warm-up and the
  figure is the median ms per (global) step of the others;
* same hardware for both: the 1-process run gets ``--threads`` torch threads, each of the 2 processes
  ``--threads / 2`` (``ddp_2proc_vs_1proc_step_ratio`` = 2-process ms per step / 1-process ms per step:
  below 1, DDP is faster); the 1-process run with ``--threads / 2`` threads is printed too (what DDP adds
  to one rank's step: the gradient all-reduce, the loss all-reduce and the agreed collapse flag).

Usage: python benchmarks/ddp.py [--train 1600] [--epochs 3] [--threads 2] [--batch-size 32]
       (worker mode, used by the above: ddp.py --worker GRAPHS.pt OUT.json --threads N --epochs E ...)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One rank (or the only process): train through the engine and time each epoch's steps."""
    from streamguard.config import CollapseConfig, GNNConfig, TrainConfig
    from streamguard.models.gnn import GNNClassifier, gnn_collate
    from streamguard.train import distributed, engine

    graphs = torch.load(args.worker[0], weights_only=False)
    train, valid = graphs[:args.train], graphs[args.train:]
    gcfg = GNNConfig(hidden=96, layers=3, batch_size=args.batch_size, epochs=args.epochs, lr=1e-3,
                     patience=args.epochs + 1)
    tcfg = TrainConfig(checkpoint_every_steps=0, num_threads=args.threads, deterministic=True,
                       collapse=CollapseConfig(single_class_is_collapse=False))
    torch.manual_seed(0)
    job = engine.TrainJob(family="gnn", model=GNNClassifier(gcfg), train=train, valid=valid, test=valid,
                          collate=gnn_collate, labels=lambda ds: [int(g.y.view(-1)[0]) for g in ds], opt=gcfg,
                          train_cfg=tcfg, seed=0, out_dir=Path(args.worker[1]).parent)
    run = engine._Run(job)
    d = run.dist
    per_step = []
    for _ in range(args.epochs):
        d.barrier()
        t = time.perf_counter()
        losses = run.train_epoch()
        d.barrier()
        per_step.append((time.perf_counter() - t) / len(losses))
        run.state.epoch, run.state.pos = run.state.epoch + 1, 0
    if d.is_main:
        Path(args.worker[1]).write_text(json.dumps({"ms_per_step": [s * 1e3 for s in per_step], "world": d.world,
                                                    "threads": torch.get_num_threads(), "steps": len(losses)}))
    distributed.shutdown()


def _run(graphs: Path, out: Path, procs: int, threads: int, args) -> dict:
    cmd = [str(Path(__file__).resolve()), "--worker", str(graphs), str(out), "--threads", str(threads),
           "--epochs", str(args.epochs), "--train", str(args.train), "--batch-size", str(args.batch_size)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *cmd]
    else:
        cmd = [sys.executable, *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        sys.exit(f"benchmarks/ddp.py: {procs}-process run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["median_ms"] = statistics.median(res["ms_per_step"][1:] or res["ms_per_step"])
    print(f"# {procs} process(es) x {threads} thread(s): ms/step per epoch {[round(x, 1) for x in res['ms_per_step']]}",
          file=sys.stderr, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=1600, help="training graphs (default 1600: 50 steps/epoch)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the 1-process run (2-process: half each)")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (demo profile: 32)")
    ap.add_argument("--worker", nargs=2, metavar=("GRAPHS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from streamguard.data.synthetic import generate
    from streamguard.graphs import build_graph

    t = time.perf_counter()
    samples = generate(args.train + 64, seed=0)
    graphs = [build_graph(s.func, str(i), s.target) for i, s in enumerate(samples)]
    build_s = time.perf_counter() - t
    half = max(1, args.threads // 2)
    with tempfile.TemporaryDirectory(prefix="sg-bench-ddp-") as tmp:
        data = Path(tmp) / "graphs.pt"
        torch.save(graphs, data)
        one = _run(data, Path(tmp) / "one.json", 1, args.threads, args)
        two = _run(data, Path(tmp) / "two.json", 2, half, args)
        one_half = _run(data, Path(tmp) / "one-half.json", 1, half, args) if half != args.threads else one
    mean_nodes = sum(g.num_nodes for g in graphs[:args.train]) / args.train
    print(f"model: gnn hidden 96 layers 3, global batch {args.batch_size} ({args.train} train graphs, mean "
          f"{mean_nodes:.0f} nodes), {args.epochs} epochs (first one warm-up), gloo on the CPU")
    print(f"graph_build_seconds: {build_s:.2f}")
    print(f"steps_per_epoch: {one['steps']}")
    print(f"ddp_1proc_threads: {args.threads}")
    print(f"ddp_2proc_threads_per_rank: {half}")
    print(f"ddp_1proc_ms_per_step: {one['median_ms']:.2f}")
    print(f"ddp_2proc_ms_per_step: {two['median_ms']:.2f}")
    print(f"ddp_1proc_{half}thread_ms_per_step: {one_half['median_ms']:.2f}")
    print(f"ddp_1proc_graphs_per_s: {args.batch_size / one['median_ms'] * 1e3:.1f}")
    print(f"ddp_2proc_graphs_per_s: {args.batch_size / two['median_ms'] * 1e3:.1f}")
    print(f"ddp_2proc_vs_1proc_{half}thread_step_ratio: {two['median_ms'] / one_half['median_ms']:.3f}")
    print(f"ddp_2proc_vs_1proc_step_ratio: {two['median_ms'] / one['median_ms']:.3f}")


if __name__ == "__main__":
    main()
