"""Real vulnerable/fixed pairs end to end: the whole pipeline under kfp.local on Debian's CVE fixes.

Runs ``pipelines.run_local`` (demo profile, the compiled local pipeline, seeds 42, 2025, 7 unless
``--seeds``) on ``../shared/data/debian_pairs.jsonl.gz`` (145 pairs of C functions from 35 Debian
packages, see the README beside it) with a project-wise split (``data.split_strategy=project``:
no package in two splits) and ``train.collapse.single_class_is_collapse=false`` (at chance, a model that
predicts one class on the 24 validation functions is a result, not a collapse; with the demo profile's
default the GNN and the transformer stop with exit 3), and prints ``name: value`` lines:

* ``wall_seconds`` (the pipeline) and ``cpu_seconds`` (user + sys of this process and its children);
* per family (transformer, gnn, fusion): F1, PR-AUC, VD-S and the pair metrics P-C, P-V, P-B, P-R on the
  test split -- each the mean over seeds, with a 95 % percentile bootstrap interval over test pairs
  (``eval.metrics.bootstrap_ci``, whole pairs resampled; each resample averages the seeds);
* the share of pairs whose two sides are identical inputs, per view: lexically (what no setting
  separates), and to the transformer with one window (``max_windows=1``: plain truncation, the
  behaviour before windowing) and with the configured windows, at the demo window (256) and at the
  production window (512) -- with the scratch BPE tokenizer the demo trains on the train split
  (production's CodeBERT tokenizer is not available offline; its 50k vocabulary cuts code into
  fewer tokens, so the shares with it are at most these) -- on the pairs as read (145) and as kept
  by ingest (conflicting-label copies removed).

Expect numbers near chance: real pairs differ in a line or two, and 28 test functions give wide intervals.
Without the data file the benchmark prints why and exits 0.

Usage: python benchmarks/real_pairs.py [--data PATH] [--workdir DIR] [--seeds 42,2025,7] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian_pairs.jsonl.gz"
METRICS = ("f1", "pr_auc", "vd_s", "pair_correct", "pair_vulnerable", "pair_benign", "pair_reversed")
SHORT = {"pair_correct": "p_c", "pair_vulnerable": "p_v", "pair_benign": "p_b", "pair_reversed": "p_r"}


def _results(pipeline_root: Path) -> dict[str, list[dict]]:
    """Each training result directory's card and predictions, by family."""
    from streamguard.eval.predictions import read_predictions
    from streamguard.jsonio import read_json

    out: dict[str, list[dict]] = {}
    for card_path in sorted(pipeline_root.rglob("model_card.json")):
        d = card_path.parent
        if not (d / "predictions.jsonl").is_file():
            continue
        card = read_json(card_path)
        ids, y, p, pairs = read_predictions(d / "predictions.jsonl")
        out.setdefault(card["family"], []).append({"seed": card["seed"], "threshold": card["threshold"], "ids": ids,
                                                   "labels": y, "probs": p, "pair_ids": pairs})
    return out


def _metric(runs: list[dict], name: str, idx: np.ndarray) -> float:
    """``name`` of the resample ``idx``, averaged over the seeds' runs. Only that metric is computed (the
    count form for F1 / PR-AUC: every metric of ``compute_metrics`` per resample made the intervals take
    ~45 s a metric)."""
    from streamguard.eval.metrics import (
        WEIGHTED_METRICS,
        compute_metrics,
        pair_metrics,
        resampled_pairs,
        tpr_at_fpr,
        weighted_metric,
    )

    vals = []
    for r in runs:
        y, p = r["labels"][idx], r["probs"][idx]
        if name.startswith("pair_"):
            pairs = resampled_pairs(idx, r["labels"], (r["probs"] >= r["threshold"]).astype(int), r["pair_ids"])
            vals.append(pair_metrics(pairs).get(name, float("nan")) if pairs else float("nan"))
        elif name in WEIGHTED_METRICS and len(np.unique(y)) == 2:
            counts = np.bincount(idx, minlength=len(r["labels"]))[None, :]
            vals.append(float(weighted_metric(name, r["labels"], r["probs"], r["threshold"])(counts)[0]))
        elif name == "vd_s":
            vals.append(1.0 - tpr_at_fpr(y, p, 0.005))
        else:
            vals.append(compute_metrics(y, p, r["threshold"])[name])
    return float(np.mean(vals))


def _shares(data_dir: Path, raw: Path, cfg) -> dict[str, str]:
    """Identical-pair shares per view (module docstring), as ``name -> "k/n (share)"``."""
    from streamguard.data import views
    from streamguard.data.hygiene import strip_comments
    from streamguard.data.loaders import load, to_sample
    from streamguard.data.samples import SPLITS, read_split
    from streamguard.families.transformer import view
    from streamguard.models.transformer import TokenDataset, Windowing, load_tokenizer, make_scratch_checkpoint

    kept = [s for sp in SPLITS for s in read_split(data_dir, sp)]
    as_read = [x for x in (to_sample(r.data, cfg.data.max_func_bytes) for r in load(raw, "auto").rows if r.data)
               if not isinstance(x, tuple)]
    tc = cfg.transformer
    strip = Windowing.from_config(tc).strip_comments  # the transformer's text, as in training
    train = [strip_comments(s.func) if strip else s.func for s in read_split(data_dir, "train")]
    out = {}
    with tempfile.TemporaryDirectory(prefix="sg-bench-tok-") as tmp:
        ckpt = make_scratch_checkpoint(train, tmp, vocab_size=tc.scratch_vocab, hidden=tc.scratch_hidden, layers=1,
                                       heads=tc.scratch_heads, max_length=512, seed=0)
        tok = load_tokenizer(ckpt, 512)
        for where, samples in (("as_read", as_read), ("kept", kept)):
            lex = views.view_stats(views.lexical_view(samples), samples)
            out[f"identical_pairs_lexical_{where}"] = f"{lex['identical_pairs']}/{lex['pairs']}"
            for label, window, max_windows in (("demo", 256, tc.max_windows), ("production", 512, 24)):
                for mode, mw in (("one_window", 1), ("windowed", max_windows)):
                    w = Windowing(window=window, stride=window - 2, max_windows=mw, strip_comments=strip)
                    ds = TokenDataset([s.func for s in samples], [s.target for s in samples], tok, w)
                    st = views.view_stats(view(ds), samples)
                    out[f"identical_pairs_{label}_{window}_{mode}_{mw}w_{where}"] = \
                        f"{st['identical_pairs']}/{st['pairs']}"
                    out[f"truncated_share_{label}_{window}_{mode}_{mw}w_{where}"] = f"{st['truncated_share']:.4f}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--workdir", default="", help="where the run's artifacts go (default: a temporary directory)")
    ap.add_argument("--seeds", default="", help="comma-separated seeds (default: the pipeline's 42,2025,7)")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        print(f"real_pairs: skipped ({data} not found; it lives in the team's shared/data)")
        return 0
    sys.path.insert(0, str(ROOT))
    from pipelines.run_local import run_local
    from streamguard.config import load_config
    from streamguard.eval.metrics import bootstrap_ci

    overrides = {"data": {"split_strategy": "project"},
                 # a chance-level model that predicts one class on 24 validation functions is the honest
                 # result on real pairs, not a numerical collapse (the demo profile would stop it with exit 3)
                 "train": {"collapse": {"single_class_is_collapse": False}}}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or None
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="sg-real-pairs-")
    workdir = Path(args.workdir or tmp.name)
    t0 = time.time()
    out = run_local(str(data), workdir, profile="demo", overrides=overrides, seeds=seeds)
    wall = time.time() - t0
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    print(f"wall_seconds: {wall:.0f}")
    print(f"cpu_seconds: {sum(r.ru_utime + r.ru_stime for r in ru):.0f}")
    results = _results(Path(out["pipeline_root"]))
    for fam in ("transformer", "gnn", "fusion"):
        runs = results.get(fam, [])
        if not runs:
            print(f"{fam}_seeds: 0")
            continue
        n = len(runs[0]["labels"])
        print(f"{fam}_seeds: {len(runs)}")
        print(f"{fam}_test_samples: {n}")
        print(f"{fam}_test_pairs: {len({p for p in runs[0]['pair_ids'] if p is not None})}")
        for name in METRICS:
            ci = bootstrap_ci(lambda idx, nm=name, rs=runs: _metric(rs, nm, idx), n, groups=runs[0]["pair_ids"],
                              n_boot=args.n_boot, seed=0)
            key = f"{fam}_{SHORT.get(name, name)}"
            print(f"{key}: {ci['value']:.4f}")
            print(f"{key}_ci95_low: {ci['low']:.4f}")
            print(f"{key}_ci95_high: {ci['high']:.4f}")
    data_dirs = [p.parent for p in Path(out["pipeline_root"]).rglob("data_report.json")]
    cfg = load_config("demo", overrides=overrides)
    for k, v in _shares(data_dirs[0], data, cfg).items():
        print(f"{k}: {v}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
