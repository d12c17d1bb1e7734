"""Graph builder benchmark: prints one ``name: value`` line per figure (ratios end in ``ratio``).

1. On the same synthetic C functions, in one run and one process: bare tree-sitter parse
   time, our full graph build time (parse + AST/token/CFG/def-use + arrays), their ratio
   (goal <= 2) and functions/s; plus the parallel stage throughput (all cores, shards written).
2. Time to load 21,854 graphs (the CodeXGLUE train split size) from our shards vs. from one
   ``.pt`` file per graph (the first prototype's layout: ``torch.save`` of one int64 ``Data`` each,
   ``torch.load`` of each); goal: shards >= 20x faster. Both give a list of ready ``Data``
   objects; shard graphs keep the compact dtypes (``gnn_collate`` casts per batch). Shown with the
   shards memory-mapped (the pipeline's default) and read fully into memory (``mmap=False``).
   Median of ``--load-repeats`` runs each, after ``os.sync()``.

Usage: python benchmarks/graphs.py [--functions 2000] [--graphs 21854] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from streamguard.graphs import builder
from streamguard.graphs.shards import MANIFEST, load_graphs, write_shard
from streamguard.graphs.stage import build_graphs

NAMES = ["buf", "len", "ctx", "idx", "ret", "ptr", "size", "count", "flags", "data", "offset", "p", "q", "n", "i", "j"]
TYPES = ["int", "unsigned int", "size_t", "char *", "uint8_t *", "struct ctx *", "long", "const char *"]
CALLS = ["memcpy", "strlen", "malloc", "free", "av_log", "kfree", "read_u32", "check_bounds", "AV_RB16", "list_add"]


def synth_function(rng: random.Random, i: int) -> str:
    """A varied, plausible C function of roughly 15-80 lines."""
    params = [f"{rng.choice(TYPES)} {n}" for n in rng.sample(NAMES[:8], rng.randint(1, 4))]
    vars_ = rng.sample(NAMES, 5)
    lines = [f"static int func_{i}({', '.join(params)})", "{"]
    lines += [f"    {rng.choice(TYPES)} {v} = {rng.randint(0, 9)};" for v in vars_[:3]]

    def expr() -> str:
        a, b = rng.choice(vars_), rng.choice(vars_)
        return rng.choice([f"{a} + {b}", f"{a} * {rng.randint(2, 64)}", f"{rng.choice(CALLS)}({a}, {b})",
                           f"{a}[{b}] & 0x{rng.randint(1, 255):x}", f"({a} >> 2) - {b}", f"{a}->{b}", f"!{a}"])

    def block(depth: int) -> list[str]:
        ind = "    " * (depth + 1)
        out = []
        for _ in range(rng.randint(2, 6 if depth < 2 else 3)):
            r = rng.random()
            v = rng.choice(vars_)
            if r < 0.35 or depth >= 3:
                out.append(f"{ind}{v} = {expr()};")
            elif r < 0.5:
                out.append(f"{ind}if ({v} < {rng.choice(vars_)}) {{")
                out += block(depth + 1)
                out.append(f"{ind}}} else {{" if rng.random() < 0.4 else f"{ind}}}")
                if out[-1].endswith("{"):
                    out += block(depth + 1) + [f"{ind}}}"]
            elif r < 0.62:
                out.append(f"{ind}for ({v} = 0; {v} < {rng.choice(vars_)}; {v}++) {{")
                out += block(depth + 1)
                if rng.random() < 0.3:
                    out.append(f"{ind}    if ({v} == {rng.randint(1, 9)}) break;")
                out.append(f"{ind}}}")
            elif r < 0.7:
                out.append(f"{ind}while ({v}-- > 0) {{")
                out += block(depth + 1) + [f"{ind}}}"]
            elif r < 0.78:
                out.append(f"{ind}switch ({v}) {{")
                for c in range(rng.randint(2, 4)):
                    out.append(f"{ind}case {c}:")
                    out += block(depth + 1)
                    if rng.random() < 0.7:
                        out.append(f"{ind}    break;")
                out += [f"{ind}default:", f"{ind}    goto fail;", f"{ind}}}"]
            elif r < 0.85:
                out.append(f"{ind}{rng.choice(CALLS)}({v}, {expr()}, \"%s: %d\\n\");")
            elif r < 0.9:
                out.append(f"{ind}if (!{v})\n{ind}    return -EINVAL;")
            else:
                out.append(f"{ind}LOG_DEBUG({v}, {expr()});")
        return out

    lines += block(0)
    lines += [f"    return {rng.choice(vars_)};", "fail:", f"    free({vars_[0]});", "    return -1;", "}"]
    return "\n".join(lines)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=2000)
    ap.add_argument("--graphs", type=int, default=21854)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load-repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="parse/build timing rounds (best of)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    funcs = [synth_function(rng, i).encode() for i in range(args.functions)]

    # warm up both paths (parser creation, token cache is per process: clear it for fairness)
    for f in funcs[:20]:
        builder.build_arrays(f)
    builder.clear_caches()
    # parse and build alternate (the machine may be shared: a burst of load then hits both), best of --rounds
    graphs = []
    parse_runs, build_runs = [], []
    for _ in range(args.rounds):
        parse_runs.append(timed(lambda: [builder.parse(f) for f in funcs]))
        build_runs.append(timed(lambda: graphs.__setitem__(slice(None), [builder.build_arrays(f) for f in funcs])))
    parse_s, build_s = min(parse_runs), min(build_runs)
    print(f"functions: {len(funcs)}")
    print(f"mean_source_bytes: {sum(map(len, funcs)) / len(funcs):.0f}")
    print(f"mean_graph_nodes: {sum(g.num_nodes for g in graphs) / len(graphs):.1f}")
    print(f"mean_graph_edges: {sum(len(g.etype) for g in graphs) / len(graphs):.1f}")
    print(f"tree_sitter_parse_seconds: {parse_s:.3f}")
    print(f"graph_build_seconds: {build_s:.3f}")
    print(f"graph_build_vs_parse_ratio: {build_s / parse_s:.2f}")
    print(f"graph_build_functions_per_second_one_core: {len(funcs) / build_s:.0f}")

    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-graphs-"))
    try:
        data = tmp / "data"
        data.mkdir()
        for k, split in enumerate(("train", "valid", "test")):
            with open(data / f"{split}.jsonl", "w") as fh:
                for i, f in enumerate(funcs):
                    if i % 3 == k:
                        fh.write(json.dumps({"id": f"{split}-{i}", "func": f.decode(), "target": i % 2}) + "\n")
        report = build_graphs(data, tmp / "stage", workers=os.cpu_count())
        print(f"stage_workers: {report['workers']}")
        print(f"stage_functions_per_second: {report['functions_per_second']:.0f}")

        # 21,854 graphs: shards vs one .pt per graph
        n = args.graphs
        items = [(f"g{i}", i % 2, graphs[i % len(graphs)], False) for i in range(n)]
        shard_dir = tmp / "shards"
        shard_dir.mkdir()
        names = []
        for j in range(0, n, 4096):
            names.append(f"train-{j // 4096:05d}.pt")
            write_shard(shard_dir / names[-1], items[j:j + 4096])
        (shard_dir / MANIFEST).write_text(json.dumps({"splits": {"train": {"shards": names}}}))
        per_file = tmp / "per_file"
        per_file.mkdir()
        for sid, y, g, _ in items:
            torch.save(builder.arrays_to_data(g, sid, y), per_file / f"{sid}.pt")
        files = sorted(per_file.iterdir())
        os.sync()  # the files just written must not be flushed to disk while either side is timed

        def shard_load(mmap: bool) -> float:
            t = time.perf_counter()
            graphs = load_graphs(shard_dir, "train", mmap=mmap)
            s = time.perf_counter() - t
            assert len(graphs) == n and graphs[-1].sample_id == items[-1][0]
            return s

        # same statistic for both sides: the median of --load-repeats runs in this process
        shard_s = statistics.median(shard_load(True) for _ in range(args.load_repeats))
        shard_copy_s = statistics.median(shard_load(False) for _ in range(args.load_repeats))
        per_file_s = statistics.median(timed(lambda: [torch.load(p, weights_only=False) for p in files])
                                       for _ in range(args.load_repeats))
        print(f"graphs_loaded: {n}")
        print(f"shard_files: {len(names)}")
        print(f"shard_load_seconds: {shard_s:.3f}")
        print(f"shard_load_no_mmap_seconds: {shard_copy_s:.3f}")
        print(f"per_file_load_seconds: {per_file_s:.3f}")
        print(f"shard_vs_per_file_load_speedup_ratio: {per_file_s / shard_s:.1f}")
        print(f"shard_no_mmap_vs_per_file_load_speedup_ratio: {per_file_s / shard_copy_s:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
