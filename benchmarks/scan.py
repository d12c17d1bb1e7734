"""Scan benchmark: ``streamguard scan`` throughput on CPU next to the bare graph build of the same functions.

A tree of ``--functions`` synthetic C functions (``streamguard.data.synthetic``, the demo's generator),
``--per-file`` to a ``.c`` file, is scanned end to end with a demo-size bundle (the ``demo`` profile's
transformer, GNN and fusion; trained for one epoch on a few hundred functions unless ``--bundle`` names
one, e.g. the best bundle of ``make demo``): reading and checking the files, tree-sitter parsing and
function extraction, graphs and tokens of every function, the three models, the JSON and SARIF files.
The reference is the bare graph build (``build_or_fallback`` at the bundle's node cap, one process) of the
functions the scan extracted. Prints ``name: value`` lines; the goal is ``scan_vs_graph_build_ratio`` <= 3
(wall clock; the CPU-time ratio is printed too, as it is steadier on a shared machine).

Usage: python benchmarks/scan.py [--functions 3000] [--per-file 25] [--bundle DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from streamguard import families, training
from streamguard.bundle import load_bundle, write_bundle
from streamguard.config import load_config
from streamguard.data.ingest import ingest
from streamguard.data.synthetic import generate, write_demo_dataset
from streamguard.graphs import build_graphs
from streamguard.graphs.builder import build_or_fallback
from streamguard.scan import extract_functions, scan

QUICK = {"transformer": {"epochs": 1, "lr": 5e-4}, "gnn": {"epochs": 1, "lr": 1e-3},
         "fusion": {"epochs": 1, "lr": 3e-3},
         "train": {"lr_finder": False, "collapse": {"single_class_is_collapse": False, "min_output_std": 0.0}}}
"""The demo profile's architectures, one quick epoch each: the benchmark measures speed, not quality."""


def demo_size_bundle(work: Path, n: int = 400) -> Path:
    cfg = load_config("demo", overrides=QUICK)
    write_demo_dataset(work / "train.jsonl", n=n, seed=1)
    ingest(str(work / "train.jsonl"), str(work / "data"), cfg.data)
    build_graphs(work / "data", work / "graphs", workers=1, max_nodes=cfg.gnn.max_nodes)
    models: dict[str, Path] = {}
    for name in families.names():
        fam = families.get(name)
        inputs = {"data": work / "data", "graphs": work / "graphs", **models}
        models[name] = work / "models" / name
        training.train(name, {k: inputs[k] for k in ["data", *(i.name for i in fam.inputs)]}, models[name],
                       work / "results" / name, seed=0, cfg=cfg)
    write_bundle(work / "bundle", models, data_dir=work / "data")
    return work / "bundle"


def write_tree(root: Path, n: int, per_file: int, seed: int) -> None:
    samples = generate(n, seed=seed)
    for k in range(0, n, per_file):
        d = root / f"mod{k // (per_file * 20):02d}"
        d.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(s.func for s in samples[k:k + per_file])
        (d / f"file{k // per_file:04d}.c").write_text("#include <string.h>\n#include <stdlib.h>\n\n" + body + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=3000)
    ap.add_argument("--per-file", type=int, default=25)
    ap.add_argument("--bundle", default="", help="a bundle to use (default: train a demo-size one, ~1 min)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the scan (default: torch's, all cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="sg-bench-scan-") as tmp:
        work = Path(tmp)
        bundle = load_bundle(args.bundle or demo_size_bundle(work / "bundle-work"))
        torch.set_num_threads(threads)  # training the bundle set the demo profile's one thread
        tree = work / "tree"
        write_tree(tree, args.functions, args.per_file, args.seed)
        funcs = []
        for f in sorted(tree.rglob("*.c")):
            src = f.read_bytes()
            funcs += [src[b0:b1] for _, _, _, b0, b1 in extract_functions(src)]
        max_nodes = int(bundle.manifest["max_nodes"])
        for code in funcs[:20]:  # warm the builder's caches for both runs alike
            build_or_fallback(code, max_nodes)

        t0, c0 = time.perf_counter(), time.process_time()
        for code in funcs:
            build_or_fallback(code, max_nodes)
        graph_s, graph_cpu = time.perf_counter() - t0, time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        result = scan([tree], bundle, work / "out", progress=False)
        scan_s, scan_cpu = time.perf_counter() - t0, time.process_time() - c0

    n = result["functions_scored"]
    assert n == len(funcs), (n, len(funcs))
    print(f"functions: {n}")
    print(f"files: {result['files']['scanned']}")
    print(f"torch_threads: {torch.get_num_threads()}")
    print(f"bundle: {bundle.source}")
    print(f"graph_build_seconds: {graph_s:.2f}")
    print(f"graph_build_functions_per_s: {n / graph_s:.1f}")
    print(f"scan_seconds: {scan_s:.2f}")
    print(f"scan_functions_per_s: {n / scan_s:.1f}")
    print(f"scan_vs_graph_build_ratio: {scan_s / graph_s:.2f}")
    print(f"scan_vs_graph_build_cpu_time_ratio: {scan_cpu / graph_cpu:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
