"""Training-engine overhead benchmark: prints one ``name: value`` line per figure (ratios end in ``ratio``).

Steps/s of ``streamguard.train.engine.fit`` with every safety feature on vs. a bare PyTorch loop,
on the same model, the same initial weights and the same batches, in one process:

* model: the GNN (``GNNClassifier``) at the demo profile's size (hidden 96, 3 GINE layers), batch 32,
  on program graphs built by the real graph builder from the synthetic demo functions (~80 nodes
  each); a step takes ~100 ms on one CPU thread, so fixed per-step overheads are weighed against a
  realistic step, not against a toy MLP;
* engine: AMP decision (fp32 on CPU), clipping through ``step.train_step``, class-weighted loss,
  LR scheduler, collapse monitor on every step, checkpoints every ``--checkpoint-every`` steps *and*
  every epoch to a local object store (atomic writes), the LR fixed (``lr_source: fixed``; the finder
  is a one-off), and the progress bar forced on (written to /dev/null);
* bare loop: ``zero_grad``, forward, (the same class-weighted) cross-entropy, backward,
  ``clip_grad_norm_``, ``AdamW.step`` over the same per-epoch batch index lists
  (``engine.epoch_batches``), collated the same way inside the loop.

Fairness: the per-epoch validation pass and the final valid/test evaluation (``engine.predict``,
``tune_threshold``, ``compute_metrics``) are timed and subtracted from the engine's wall time; the
bare loop has none. Everything else the engine does is charged to it: set-up, best-weight copies,
all checkpoints (every N steps, every epoch, the final one), logging. Rounds alternate engine/bare (the order flips each
round); ``engine_vs_bare_steps_ratio`` is the ratio of the median times per step, the
``*_round_ratio`` lines summarise the paired per-round ratios, and
``engine_minus_checkpoints_vs_bare_steps_ratio`` takes the (timed) checkpoint writes out again, to
show what the rest of the engine costs.

Usage: python benchmarks/engine.py [--train 1600] [--epochs 2] [--rounds 4] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from streamguard.config import CollapseConfig, GNNConfig, OptimConfig, TrainConfig
from streamguard.data.synthetic import generate
from streamguard.graphs import build_graph
from streamguard.models.gnn import GNNClassifier, gnn_collate
from streamguard.storage import open_store
from streamguard.train import engine
from streamguard.train.interface import class_weights_from_labels, move_to


def _labels(ds) -> list[int]:
    return [int(g.y.view(-1)[0]) for g in ds]


def bare_loop(model, train, opt_cfg: OptimConfig, seed: int, epochs: int, weights: torch.Tensor) -> tuple[float, int]:
    """The reference: what a hand-written loop does per step. Returns (seconds, steps)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    steps = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for idx in engine.epoch_batches(len(train), opt_cfg.batch_size, seed, epoch):
            batch = move_to(gnn_collate([train[i] for i in idx]), "cpu")
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(batch), batch["labels"], weight=weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.grad_clip)
            optimizer.step()
            steps += 1
    return time.perf_counter() - t0, steps


def engine_run(model, train, valid, test, opt_cfg: OptimConfig, train_cfg: TrainConfig, seed: int,
               workdir: Path) -> tuple[float, float, int, int, float]:
    """One ``fit``: (wall s, s in the validation/test passes, steps, checkpoints written, s writing them)."""
    in_eval = [0.0]
    evals = ("predict", "tune_threshold", "compute_metrics")
    real = {name: getattr(engine, name) for name in evals}
    real_tqdm, real_writer = engine.tqdm, engine.CheckpointWriter
    saves = [0, 0.0]
    devnull = open(os.devnull, "w")

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                in_eval[0] += time.perf_counter() - t
        return wrapper

    def bar(*a, **k):  # the engine leaves tqdm's default (off when stderr is not a terminal): force it on
        return real_tqdm(*a, **{**k, "disable": False, "file": devnull})

    class CountedWriter(real_writer):
        """Counts checkpoints and the time they cost the training thread (serialise + wait for the last write)."""

        def save(self, state):
            t = time.perf_counter()
            try:
                return super().save(state)
            finally:
                saves[0] += 1
                saves[1] += time.perf_counter() - t

    store = open_store(str(workdir / "store"))
    job = engine.TrainJob(family="gnn", model=model, train=train, valid=valid, test=test, collate=gnn_collate,
                          labels=_labels, opt=opt_cfg, train_cfg=train_cfg, seed=seed, out_dir=workdir / "out",
                          store=store, checkpoint_key="checkpoints/bench/gnn/last.pt", lr_key_parts={"data": "bench"})
    for name in evals:
        setattr(engine, name, timed(real[name]))
    engine.tqdm, engine.CheckpointWriter = bar, CountedWriter
    try:
        t0 = time.perf_counter()
        result = engine.fit(job)
        wall = time.perf_counter() - t0
    finally:
        for name in evals:
            setattr(engine, name, real[name])
        engine.tqdm, engine.CheckpointWriter = real_tqdm, real_writer
        devnull.close()
    steps = result.history[-1]["step"]
    assert result.lr_info["lr_source"] == "fixed", result.lr_info
    return wall, in_eval[0], steps, saves[0], saves[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=1600, help="training graphs (default 1600: 50 steps/epoch)")
    ap.add_argument("--eval", type=int, default=64, help="valid and test graphs each")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--checkpoint-every", type=int, default=50, help="engine checkpoint interval (demo profile: 50)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    engine.seed_everything(args.seed, True)  # the engine's global determinism settings, for both loops
    samples = generate(args.train + 2 * args.eval, seed=args.seed)
    t = time.perf_counter()
    graphs = [build_graph(s.func, str(i), s.target) for i, s in enumerate(samples)]
    build_s = time.perf_counter() - t
    train, valid, test = graphs[:args.train], graphs[args.train:args.train + args.eval], graphs[args.train + args.eval:]

    gcfg = GNNConfig(hidden=96, layers=3, batch_size=args.batch_size, epochs=args.epochs, lr=1e-3,
                     patience=args.epochs + 1)
    tcfg = TrainConfig(checkpoint_every_steps=args.checkpoint_every, num_threads=args.threads, deterministic=True,
                       collapse=CollapseConfig(action="stop", single_class_is_collapse=False))
    torch.manual_seed(args.seed)
    init = copy.deepcopy(GNNClassifier(gcfg).state_dict())
    weights = class_weights_from_labels(_labels(train))

    def fresh():
        m = GNNClassifier(gcfg)
        m.load_state_dict(init)
        return m

    eng, bare, ckpt_s = [], [], []
    ckpts = predict_s = 0
    with tempfile.TemporaryDirectory(prefix="sg-bench-engine-") as tmp:
        for r in range(args.rounds):
            order = ("engine", "bare") if r % 2 == 0 else ("bare", "engine")
            for which in order:
                if which == "engine":
                    wall, pred, steps, ckpts, saving = engine_run(fresh(), train, valid, test, gcfg, tcfg,
                                                                  args.seed, Path(tmp) / f"r{r}")
                    eng.append((wall - pred) / steps)
                    predict_s = pred
                    ckpt_s.append(saving)
                else:
                    secs, bsteps = bare_loop(fresh(), train, gcfg, args.seed, args.epochs, weights)
                    bare.append(secs / bsteps)
            print(f"# round {r}: engine {eng[-1] * 1e3:.1f} ms/step, bare {bare[-1] * 1e3:.1f} ms/step",
                  file=sys.stderr, flush=True)

    e, b = statistics.median(eng), statistics.median(bare)
    per_round = [x / y for x, y in zip(eng, bare)]
    no_ckpt = [(x - c / steps) / y for x, y, c in zip(eng, bare, ckpt_s)]
    mean_nodes = sum(g.num_nodes for g in train) / len(train)
    print(f"model: gnn hidden {gcfg.hidden} layers {gcfg.layers} batch {gcfg.batch_size} "
          f"({len(train)} train graphs, mean {mean_nodes:.0f} nodes), {args.threads} thread(s), "
          f"{args.epochs} epochs x {args.rounds} rounds")
    print(f"graph_build_seconds: {build_s:.2f}")
    print(f"steps_per_epoch: {-(-len(train) // gcfg.batch_size)}")
    print(f"checkpoints_per_engine_run: {ckpts}")
    print(f"checkpoint_ms_each: {statistics.median(ckpt_s) / max(1, ckpts) * 1e3:.1f}")
    print(f"engine_eval_seconds_excluded_per_run: {predict_s:.2f}")
    print(f"bare_ms_per_step: {b * 1e3:.2f}")
    print(f"engine_ms_per_step: {e * 1e3:.2f}")
    print(f"bare_steps_per_s: {1 / b:.3f}")
    print(f"engine_steps_per_s: {1 / e:.3f}")
    print(f"engine_vs_bare_steps_ratio: {e / b:.3f}")
    print(f"engine_vs_bare_steps_median_round_ratio: {statistics.median(per_round):.3f}")
    print(f"engine_vs_bare_steps_min_round_ratio: {min(per_round):.3f}")
    print(f"engine_vs_bare_steps_max_round_ratio: {max(per_round):.3f}")
    print(f"engine_minus_checkpoints_vs_bare_steps_ratio: {statistics.median(no_ckpt):.3f}")


if __name__ == "__main__":
    main()
