"""Run the compiled pipeline on this machine with ``kfp.local`` (no cluster): ``make demo``.

The compiled YAML is loaded back with ``kfp.components.load_component_from_file``
and executed by ``kfp.local.SubprocessRunner(use_venv=False)`` in this
interpreter; KFP artifacts land under ``<workdir>/pipeline_root`` and
StreamGuard's object store is the embedded directory ``<workdir>/store``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipelines.compile import DEFAULT_OUTPUT

EXAMPLE_C = Path(__file__).resolve().parent.parent / "examples" / "c"
"""A few hand-written C functions (one a classic overflow) that the demo scans with its best bundle."""


def run_local(input_uri: str, workdir: str | Path, *, pipeline_yaml: str | Path = DEFAULT_OUTPUT,
              seeds: list[int] | None = None, profile: str = "demo", overrides: dict | None = None,
              require_gpu: bool = False, eval_uris: list[str] | None = None) -> dict:
    """Run the compiled pipeline; returns the local paths of its outputs (and ``run_dir``, where its tasks'
    artifacts are)."""
    from kfp import components, local

    workdir = Path(workdir).resolve()
    store = workdir / "store"
    root = workdir / "pipeline_root"
    store.mkdir(parents=True, exist_ok=True)
    # kfp.local deletes its workspace after each run: give it a throw-away directory
    workspace = Path(tempfile.mkdtemp(prefix="sg-kfp-workspace-"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = components.load_component_from_file(str(pipeline_yaml))
    args = {"input_uri": str(Path(input_uri).resolve()), "profile": profile, "store_uri": str(store),
            "overrides": _nulls_as_text(overrides or {}), "require_gpu": require_gpu}
    if seeds is not None:
        args["seeds"] = list(seeds)
    if eval_uris is not None:
        args["eval_uris"] = list(eval_uris)
    try:
        task = pipeline(**args)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    out = {name: art.path for name, art in task.outputs.items()}
    out["pipeline_root"] = str(root)
    out["run_dir"] = str(root / Path(out["summary"]).relative_to(root).parts[0])
    return out


def _nulls_as_text(value):
    """``None`` -> ``"null"`` in nested overrides: the KFP SDK cannot put a null into a parameter, and the
    config reads ``"null"`` as None for a field that is not a string (``{"gnn": {"lr": None}}``: the LR finder)."""
    if isinstance(value, dict):
        return {k: _nulls_as_text(v) for k, v in value.items()}
    return "null" if value is None else value


def bundles_of(run_dir: str | Path) -> list[Path]:
    """The bundles (one per seed) a local run wrote."""
    return sorted(p.parent for p in Path(run_dir).glob("**/train-fusion/bundle/bundle.json"))


def demo_scan(run_dir: str | Path, out_dir: str | Path, tree: Path = EXAMPLE_C) -> str:
    """Scan ``tree`` with the run's best bundle (by validation F1); one line saying how and what came out."""
    from transformers.utils import logging as hf_logging

    from streamguard.bundle import best_bundle
    from streamguard.scan import scan, summary_line

    hf_logging.disable_progress_bar()  # the one line, without "Loading weights" bars
    best = best_bundle(bundles_of(run_dir))
    result = scan([tree], best, out_dir, progress=False)
    shown = tree.relative_to(Path.cwd()) if tree.is_relative_to(Path.cwd()) else tree
    return f"scan (streamguard scan {shown} --bundle {best}): {summary_line(result)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True, help="dataset file")
    ap.add_argument("--workdir", default="local_outputs", help="where KFP artifacts and the embedded store go")
    ap.add_argument("--profile", default="demo", help="StreamGuard config profile")
    ap.add_argument("--seeds", default="", help="comma-separated seeds (default: the pipeline's 42,2025,7)")
    ap.add_argument("--pipeline", default=str(DEFAULT_OUTPUT), help="compiled pipeline YAML")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or None
    t0 = time.time()
    try:
        out = run_local(args.input, args.workdir, pipeline_yaml=args.pipeline, seeds=seeds, profile=args.profile)
    except RuntimeError as e:
        print(f"streamguard demo: pipeline failed: {e}", file=sys.stderr)
        return 1
    summary_path = Path(out["summary"]) / "production_summary.json"
    summary = json.loads(summary_path.read_text())
    print(f"\nStreamGuard pipeline finished in {time.time() - t0:.0f} s. Test F1, mean ± std over seeds:")
    for fam, m in summary["models"].items():
        print(f"  {fam:12s} {m['mean']['f1']:.3f} ± {m['std']['f1']:.3f}  "
              f"({m['n_seeds']} seeds, best seed {m['best_seed']})")
    for name, m in summary.get("ablation", {}).get("models", {}).items():
        for part, o in m["overall"].items():
            f1 = o["f1"]
            print(f"  {name} - {part}: test F1 {f1['mean_diff']:+.3f} on average; at least as good on "
                  f"{f1['seeds_at_least_as_good']} of {f1['n_seeds']} seeds (paired bootstrap intervals: report)")
    print(f"\nproduction_summary.json: {summary_path}")
    print(f"report (Markdown):       {out['report']}")
    print(f"report (HTML):           {out['report_html']}")
    print(f"all KFP artifacts:       {out['pipeline_root']}")
    pub = json.loads((Path(out["published"]) / "publish.json").read_text())
    print(f"published:               {pub['uri']} ({pub['gate']['decision']}; champion {pub['champion']}, "
          f"--bundle {Path(args.workdir).resolve() / 'store' / 'models' / pub['model_name'] / 'champion'})")
    print(demo_scan(out["run_dir"], Path(args.workdir) / "scan"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
