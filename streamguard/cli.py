"""streamguard command line: one sub-command per pipeline stage.

Exit codes: 0 success, 1 unexpected failure, 2 bad input or config (also a
permanent object-store refusal: access denied, no such bucket), 3 training
collapse, 4 pre-flight failed, 5 object store unavailable past
store.retry_budget_s (rerun: training resumes from its last checkpoint).
Expected errors print one line and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from streamguard import __version__, families
from streamguard.stage import run_cli, setup_logging


def _config(args):
    from streamguard.config import load_config

    overrides = json.loads(args.overrides) if getattr(args, "overrides", None) else None
    return load_config(args.profile, overrides=overrides, sets=args.set)


def _store(args, cfg):
    from streamguard.storage import open_store

    return open_store(args.store or None, cfg.store)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_make_demo_data(args) -> None:
    from streamguard.data.synthetic import write_demo_dataset

    n = write_demo_dataset(args.output, n=args.n, seed=args.seed)
    print(f"wrote {n} functions to {args.output}")


def cmd_ingest(args) -> None:
    from streamguard.data.ingest import ingest

    cfg = _config(args)
    report = ingest(args.input, args.output, cfg.data, fmt=args.format, max_tokens=cfg.transformer.max_length,
                    store_settings=cfg.store)
    _print({k: report[k] for k in report if k in ("counts", "fingerprint", "bad_rows", "quarantined")})


def cmd_build_graphs(args) -> None:
    from streamguard.graphs import build_graphs

    cfg = _config(args)
    report = build_graphs(args.data, args.output, store=_store(args, cfg), workers=args.workers,
                          max_nodes=cfg.gnn.max_nodes)
    _print({k: report[k] for k in report if k not in ("failures",)})


def cmd_preflight(args) -> None:
    from streamguard.preflight import preflight

    out, cfg = args.output, _config(args)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    report = preflight(args.data, args.graphs, cfg, os.path.join(out, "preflight_report.json"),
                       os.path.join(out, "preflight_report.md"), store=_store(args, cfg), require_gpu=args.require_gpu,
                       checks=checks)
    print("pre-flight passed" if report["passed"] else "pre-flight failed")


def cmd_train(args) -> None:
    from streamguard import training

    fam = families.get(args.family)
    inputs = {"data": args.data, **{i.name: getattr(args, i.dest) for i in fam.inputs}}
    cfg = _config(args)
    card = training.train(fam, inputs, args.model_dir, args.result_dir, seed=args.seed, cfg=cfg,
                          store=_store(args, cfg), run_key=args.run_key or None)
    m = card["test_metrics"]
    print(f"{args.family} seed {args.seed}: test F1 {m['f1']:.4f}, ROC-AUC {m['roc_auc']:.4f}, "
          f"threshold {card['threshold']:.3f}, lr {card['lr']:.3g} ({card['lr_source']})")


def cmd_aggregate(args) -> None:
    from streamguard.aggregate import aggregate

    summary = aggregate(args.results, args.output)
    for fam, m in summary["models"].items():
        print(f"{fam:12s} test F1 {m['mean']['f1']:.4f} ± {m['std']['f1']:.4f} "
              f"({m['n_seeds']} seeds, best {m['best_seed']})")
    print(f"summary: {os.path.join(args.output, 'production_summary.json')}")


def _common(p: argparse.ArgumentParser, store: bool = False) -> None:
    p.add_argument("--profile", default="demo",
                   help="config profile: a name in streamguard/configs (demo, test, production) or a YAML path "
                        "(default: demo)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config field, e.g. --set gnn.epochs=3 (repeatable)")
    p.add_argument("--overrides", default="", metavar="JSON", help="nested config overrides as a JSON object")
    if store:
        p.add_argument("--store", default="", metavar="URI",
                       help="object store for checkpoints, LR cache and graph shards: a directory or "
                            "s3://bucket/prefix (default: $STREAMGUARD_STORE or ./.streamguard/store)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamguard",
                                 description=__doc__.split("\n")[0] + " (see README for exit codes)")
    ap.add_argument("--version", action="version", version=f"streamguard {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("make-demo-data", help="write the synthetic demo dataset (CodeXGLUE-style JSONL)",
                       description="Write C functions in vulnerable and fixed variants of common CWE patterns.")
    p.add_argument("--output", required=True, help="JSONL file to write")
    p.add_argument("--n", type=int, default=3000, help="number of functions (default 3000, the demo)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same file)")
    p.set_defaults(fn=cmd_make_demo_data)

    p = sub.add_parser("ingest", help="validate, quarantine bad rows, split train/valid/test",
                       description="Read a dataset, write {train,valid,test}.jsonl, quarantine.jsonl and "
                                   "data_report.json.")
    p.add_argument("--input", required=True, help="dataset file (path, http(s) URL or s3:// URI)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--format", default="auto",
                   help="input format: auto (detect), codexglue, devign, bigvul, diversevul, primevul")
    _common(p)
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("build-graphs", help="build program graphs (AST, CFG, DFG) into shards",
                       description="Build one graph per function of every split with tree-sitter; write shards.")
    p.add_argument("--data", required=True, help="ingested data directory")
    p.add_argument("--output", required=True, help="output directory for shards and manifest.json")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    _common(p, store=True)
    p.set_defaults(fn=cmd_build_graphs)

    p = sub.add_parser("preflight", help="gate: accelerator, data, object store (exit 4 on failure)",
                       description="Run the pre-flight checks and write preflight_report.{json,md}.")
    p.add_argument("--data", required=True, help="ingested data directory")
    p.add_argument("--graphs", default=None, help="graphs directory (checks every sample has a graph)")
    p.add_argument("--output", required=True, help="report directory")
    p.add_argument("--require-gpu", action="store_true", help="fail when CUDA is not available")
    p.add_argument("--checks", default="", metavar="A,B,...",
                   help="run only these checks, comma-separated (default: all, or $STREAMGUARD_PREFLIGHT_CHECKS)")
    _common(p, store=True)
    p.set_defaults(fn=cmd_preflight)

    for name in families.names():
        p = sub.add_parser(f"train-{name}", help=f"train the {name} model for one seed",
                           description=f"Train the {name} model with the shared engine; resumes from its checkpoint.")
        p.add_argument("--data", required=True, help="ingested data directory")
        for inp in families.get(name).inputs:
            p.add_argument(inp.flag, required=True, help=inp.help)
        p.add_argument("--seed", type=int, required=True, help="random seed")
        p.add_argument("--model-dir", required=True, help="where the model is written")
        p.add_argument("--result-dir", required=True, help="where metrics, predictions and metadata are written")
        p.add_argument("--run-key", default="", help="checkpoint namespace; a retry with the same key resumes")
        _common(p, store=True)
        p.set_defaults(fn=cmd_train, family=name)

    p = sub.add_parser("aggregate", help="mean ± std over seeds: production_summary.json and reports",
                       description="Recompute metrics from each result's predictions and aggregate over seeds.")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("results", nargs="+", help="result directories from the train-* commands")
    p.set_defaults(fn=cmd_aggregate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
