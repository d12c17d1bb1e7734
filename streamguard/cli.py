"""streamguard command line: one sub-command per pipeline stage.

Exit codes: 0 success, 1 unexpected failure, 2 bad input or config (also a
permanent object-store refusal: access denied, no such bucket), 3 training
collapse, 4 pre-flight failed, 5 object store unavailable past
store.retry_budget_s (rerun: training resumes from its last checkpoint), 6 a distributed
training launch failed without one of these (streamguard/launch), 7 Model Registry down or
refusing with publish.registry_failure=fail (the store publish stands).
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
    from streamguard.models.windowing import Windowing

    cfg = _config(args)
    report = ingest(args.input, args.output, cfg.data, fmt=args.format, max_tokens=cfg.transformer.max_length,
                    store_settings=cfg.store, windowing=Windowing.from_config(cfg.transformer))
    _print({k: report[k] for k in report if k in ("counts", "fingerprint", "bad_rows", "quarantined")})


def cmd_build_graphs(args) -> None:
    from streamguard.graphs import build_graphs

    cfg = _config(args)
    report = build_graphs(args.data, args.output, store=_store(args, cfg), workers=args.workers,
                          max_nodes=cfg.gnn.max_nodes)
    _print({k: report[k] for k in report if k not in ("failures",)})


def cmd_preflight(args) -> None:
    from streamguard.preflight import PreflightOptions, parse_checks, preflight

    out, cfg = args.output, _config(args)
    options = PreflightOptions(require_gpu=args.require_gpu, checks=parse_checks(args.checks) if args.checks else None)
    report = preflight(args.data, args.graphs, cfg, os.path.join(out, "preflight_report.json"),
                       os.path.join(out, "preflight_report.md"), store=_store(args, cfg), options=options)
    print("pre-flight passed" if report["passed"] else "pre-flight failed")


def cmd_train(args) -> None:
    from streamguard import training
    from streamguard.train.distributed import launched_rank

    fam = families.get(args.family)
    inputs = {"data": args.data, **{i.name: getattr(args, i.dest) for i in fam.inputs}}
    cfg = _config(args)
    card = training.train(fam, inputs, args.model_dir, args.result_dir, seed=args.seed, cfg=cfg,
                          store=_store(args, cfg), run_key=args.run_key or None)
    m = card["test_metrics"]
    if not launched_rank():  # one line per run, from rank 0
        print(f"{args.family} seed {args.seed}: test F1 {m['f1']:.4f}, ROC-AUC {m['roc_auc']:.4f}, "
              f"threshold {card['threshold']:.3f}, lr {card['lr']:.3g} ({card['lr_source']})")


def cmd_aggregate(args) -> None:
    from streamguard.aggregate import aggregate

    summary = aggregate(args.results, args.output, external_dir=args.external or None)
    for fam, m in summary["models"].items():
        print(f"{fam:12s} test F1 {m['mean']['f1']:.4f} ± {m['std']['f1']:.4f} "
              f"({m['n_seeds']} seeds, best {m['best_seed']})")
    print(f"summary: {os.path.join(args.output, 'production_summary.json')}")


def _threads(args) -> None:
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)


def cmd_bundle(args) -> None:
    from streamguard.bundle import write_bundle

    dirs = {name: getattr(args, f"{name}_dir") for name in families.names() if getattr(args, f"{name}_dir")}
    m = write_bundle(args.output, dirs, data_dir=args.data or None)
    print(f"bundle {args.output}: {', '.join(m['families'])} (seed {m['card']['seed']}, {m['head']} threshold "
          f"{m['thresholds'][m['head']]:.3f})")


def cmd_predict(args) -> None:
    _threads(args)
    from streamguard.predict import predict

    cfg = _config(args)
    r = predict(args.bundle, args.input, args.output, fmt=args.format, split=args.split, batch_size=args.batch_size,
                max_func_bytes=cfg.data.max_func_bytes, store_settings=cfg.store)
    print(f"scored {r['scored']} functions ({r['flagged']} at or above the {r['head']} threshold "
          f"{r['thresholds'][r['head']]:.3f}; {r['quarantined']} bad rows quarantined): "
          f"{os.path.join(args.output, 'predictions.jsonl')}")


def cmd_evaluate(args) -> None:
    _threads(args)
    from streamguard.evaluate import evaluate

    cfg = _config(args)
    r = evaluate(args.bundle, args.data, args.output, cfg, name=args.name or None, fmt=args.format, split=args.split,
                 batch_size=args.batch_size)
    c = r["counts"]
    print(f"evaluated {c['evaluated']} functions ({c['training_overlap']} also in training removed, "
          f"{c['pairs']} pairs):")
    for fam, m in r["metrics"].items():
        pairs = f", P-C {m['pair_correct']:.4f}" if "pair_correct" in m else ""
        print(f"  {fam:12s} F1 {m['f1']:.4f}, ROC-AUC {m['roc_auc']:.4f}, VD-S {m['vd_s']:.4f}{pairs}")
    print(f"evaluation: {os.path.join(args.output, 'evaluation.json')} (and evaluation.md)")


def cmd_scan(args) -> None:
    _threads(args)
    from streamguard.scan import format_table, scan, summary_line

    cfg = _config(args)
    r = scan(args.paths, args.bundle, args.output, changed_since=args.changed_since or None,
             threshold=args.threshold, max_file_bytes=args.max_file_bytes, root=args.root or None,
             batch_size=args.batch_size, store_settings=cfg.store)
    if args.top >= 0:
        print(format_table(r, args.top))
    print(summary_line(r))


def cmd_publish(args) -> None:
    from streamguard.publish import publish

    cfg = _config(args)
    r = publish(args.bundles, args.data, args.output, cfg, store=_store(args, cfg), summary_dir=args.summary or None,
                external_dir=args.external or None, promote=not args.no_promote, run_id=args.run_id or None,
                image=args.image or None)
    g = r["gate"]
    print(f"published {r['model_name']} {r['version']} (seed {r['card']['seed']}): {r['uri']}")
    print(f"gate: {g['decision']} -- {g['reason']}; champion: {r['champion']}")
    reg = r["registry"]
    if reg.get("registered"):
        print(f"model registry {reg['url']}: model {reg['registered_model_id']}, version {reg['model_version_id']}")
    elif reg.get("error"):
        print(f"model registry: not registered ({reg['error']})")


def cmd_register(args) -> None:
    from streamguard.publish import register_published

    cfg = _config(args)
    name = args.model_name or cfg.publish.model_name
    ids = register_published(_store(args, cfg), name, args.version, cfg)
    print(f"model registry {ids['url']}: {name} {args.version} registered (model {ids['registered_model_id']}, "
          f"version {ids['model_version_id']}, artifact {ids['model_artifact_id']})")


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
    p.add_argument("--input", required=True,
                   help="dataset file or directory (path, http(s) URL or s3:// URI; .gz/.zst compressed files too)")
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

    p = sub.add_parser("bundle", help="one seed's models in one self-contained bundle (predict, evaluate, scan)",
                       description="Copy a head model and every model it is built on into a bundle directory "
                                   "with its manifest (bundle.json).")
    for name in families.names():
        p.add_argument(f"--{name}-dir", default="", help=f"the {name} model directory (from train-{name})")
    p.add_argument("--data", default="", help="the ingested data the models were trained on (its training split "
                                              "is what evaluate removes from other datasets)")
    p.add_argument("--output", required=True, help="bundle directory to write")
    p.set_defaults(fn=cmd_bundle)

    def bundle_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bundle", required=True, help="bundle: a directory, s3://bucket/prefix, or a champion: "
                                                       "<store>/models/<name>/champion")
        p.add_argument("--batch-size", type=int, default=64, help="functions scored per step (default 64)")
        p.add_argument("--threads", type=int, default=0,
                       help="torch CPU threads (default 0: torch's, one per core; 1 is faster on a busy machine)")

    p = sub.add_parser("predict", help="score functions with a bundle: predictions.jsonl",
                       description="Score every valid function of a dataset (any ingest format; target optional) "
                                   "or an ingested directory; bad rows go to quarantine.jsonl.")
    bundle_opts(p)
    p.add_argument("--input", required=True, help="functions: file, directory, URL, s3:// URI or ingested directory")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--format", default="auto", help="input format (as ingest: auto, codexglue, devign, ...)")
    p.add_argument("--split", default="all", help="of an ingested directory: all (default), train, valid or test")
    _common(p)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("evaluate", help="every metric of a bundle on another dataset (JSON + Markdown)",
                       description="Ingest a dataset with the training hygiene, remove functions seen in training, "
                                   "and compute every metric (pair metrics with pair_id) per family.")
    bundle_opts(p)
    p.add_argument("--data", required=True, help="dataset (any ingest input) or an ingested directory")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--name", default="", help="the dataset's name in reports (default: from its file name)")
    p.add_argument("--format", default="auto", help="input format (as ingest)")
    p.add_argument("--split", default="all", help="which splits to evaluate: all (default), train, valid or test")
    _common(p)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("scan", help="score every function of a C code base: table, JSON, SARIF 2.1.0",
                       description="Walk .c/.h files, extract every function with tree-sitter, score them with a "
                                   "bundle; write scan.json and scan.sarif.")
    bundle_opts(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.add_argument("--output", default="streamguard-scan", help="directory for scan.json and scan.sarif "
                                                                "(default: ./streamguard-scan)")
    p.add_argument("--changed-since", default="", metavar="REV",
                   help="score only functions a change since this git revision touched")
    p.add_argument("--threshold", type=float, default=None,
                   help="report functions scoring at least this (default: the bundle's validation-tuned one)")
    p.add_argument("--max-file-bytes", type=int, default=1 << 20,
                   help="skip larger files as too_large (default 1048576 = 1 MiB)")
    p.add_argument("--root", default="", help="file locations are relative to this (default: current directory)")
    p.add_argument("--top", type=int, default=20, help="table rows (default 20; 0: all; -1: no table)")
    _common(p)
    p.set_defaults(fn=cmd_scan)

    p = sub.add_parser("publish", help="the best seed's bundle to the store behind the champion/challenger gate",
                       description="Pick the bundle best on validation (publish.metric), write it to "
                                   "models/<name>/<version>/ of the store, compare it with the champion on the test "
                                   "split and every eval_uris set, promote it when better by publish.margin, and "
                                   "register it in Model Registry when MODEL_REGISTRY_URL is set.")
    p.add_argument("bundles", nargs="+", help="bundle directories, one per seed (from train-fusion / bundle)")
    p.add_argument("--data", required=True, help="the ingested data they were trained on (its test split is gated on)")
    p.add_argument("--output", required=True, help="directory for publish.json, card.json, card.md")
    p.add_argument("--summary", default="", metavar="DIR", help="aggregate's output (ablation, eval_uris results)")
    p.add_argument("--external", default="", metavar="DIR",
                   help="the evaluate step's output: its eval_uris datasets are gated on too")
    p.add_argument("--no-promote", action="store_true", help="evaluate against the champion, never promote")
    p.add_argument("--run-id", default="", help="the run's id: the version is <run id>-<code version> (default: "
                                                "a UTC time)")
    p.add_argument("--image", default="", help="the image tag recorded in the card's lineage ($STREAMGUARD_IMAGE)")
    _common(p, store=True)
    p.set_defaults(fn=cmd_publish)

    p = sub.add_parser("register", help="register a published version in Kubeflow Model Registry",
                       description="Register models/<name>/<version>/ of the store (name, version, URI, format "
                                   "streamguard-bundle, card metrics) at $MODEL_REGISTRY_URL.")
    p.add_argument("--version", required=True, help="the published version")
    p.add_argument("--model-name", default="", help="default: publish.model_name")
    _common(p, store=True)
    p.set_defaults(fn=cmd_register)

    p = sub.add_parser("aggregate", help="mean ± std over seeds: production_summary.json and reports",
                       description="Recompute metrics from each result's predictions and aggregate over seeds.")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--external", default="", metavar="DIR",
                   help="external evaluations (the pipeline's evaluate step output): external.<name>")
    p.add_argument("results", nargs="+", help="result directories from the train-* commands")
    p.set_defaults(fn=cmd_aggregate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
