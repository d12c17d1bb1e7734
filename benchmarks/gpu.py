"""GPU throughput: our engine vs Hugging Face ``Trainer`` fine-tuning the same transformer, and the GNN's graphs/s.

Prints one ``name: value`` line per figure (ratios end in ``ratio``). Needs CUDA: without it, one line on
stderr and exit 2 (``make bench`` reports it as skipped). ``--cpu --tiny`` runs the same code path on the CPU
with tiny models (a check that the script works, not a measurement).

* transformer: a CodeBERT-size encoder (the RoBERTa-base config: 12 layers, hidden 768, vocab 50265), random
  weights (no download), one checkpoint directory loaded by both sides, so both train the same model from the
  same weights; sequences of exactly ``--seq-len`` tokens (no padding), batch ``--batch-size``, bf16 on CUDA
  (fp32 on the CPU, where the engine does not autocast);
* ours: ``engine._Run`` as ``fit`` sets it up from the production profile's engine settings (AMP auto,
  deterministic algorithms as configured there, collapse monitor, class-weighted loss, clipping at 1.0,
  linear warm-up/decay), no checkpoints, fixed LR; ``train_epoch`` over the data;
* theirs: ``transformers.Trainer`` with ``bf16=True``, the same batch, LR, weight decay, clipping and linear
  schedule, no logging/saving/evaluation, no dataloader workers (as ours);
* timing: the wall time between the starts of consecutive optimizer steps (CUDA synchronised), the first
  ``--warmup`` steps dropped; throughput = batch / median step time;
* GNN: the engine on demo-function program graphs, the production profile's GNN (hidden 256, 4 layers,
  batch 64), graphs/s the same way.

Usage: python benchmarks/gpu.py [--seq-len 512] [--batch-size 32] [--steps 30] [--warmup 5]
       python benchmarks/gpu.py --cpu --tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=514, type_vocab_size=1)
TINY = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=130, type_vocab_size=1)


class StepClock:
    """Start times of optimizer steps (CUDA synchronised first); ``per_step`` drops the warm-up."""

    def __init__(self, cuda: bool):
        self.cuda, self.starts = cuda, []

    def tick(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())

    def per_step(self, warmup: int) -> float:
        gaps = [b - a for a, b in zip(self.starts, self.starts[1:])][warmup:]
        if not gaps:
            raise SystemExit(f"benchmarks/gpu.py: only {len(self.starts)} steps timed; raise --steps")
        return statistics.median(gaps)


def token_items(n: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(seq_len, dtype=torch.long), "labels": int(labels[i])}
            for i in range(n)]


def collate(items: list[dict]) -> dict:
    return {"input_ids": torch.stack([it["input_ids"] for it in items]),
            "attention_mask": torch.stack([it["attention_mask"] for it in items]),
            "labels": torch.tensor([it["labels"] for it in items])}


def engine_per_step(model, items: list, collate_fn, labels, opt, warmup: int, cuda: bool, family: str) -> float:
    """Median seconds per step of our engine's training epoch over ``items``."""
    from streamguard.config import load_config
    from streamguard.train import engine

    prod = load_config("production").train
    tcfg = type(prod)(**{**vars(prod), "checkpoint_every_steps": 0, "lr_finder": False,
                         "num_threads": torch.get_num_threads()})
    clock = StepClock(cuda)
    model.register_forward_pre_hook(lambda m, a: clock.tick() if m.training else None)
    with tempfile.TemporaryDirectory() as tmp:
        job = engine.TrainJob(family=family, model=model, train=items, valid=items[:1], test=items[:1],
                              collate=collate_fn, labels=labels, opt=opt, train_cfg=tcfg, seed=0, out_dir=Path(tmp))
        engine._Run(job).train_epoch()
    clock.tick()
    return clock.per_step(warmup)


def hf_trainer_per_step(ckpt: str, items: list, args, cuda: bool) -> float:
    from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    clock = StepClock(cuda)

    class Clock(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            clock.tick()

        def on_train_end(self, *_a, **_k):
            clock.tick()

    model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=2)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=2e-5, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=0.06,
            bf16=cuda, use_cpu=not cuda, logging_strategy="no", save_strategy="no", eval_strategy="no",
            report_to=[], dataloader_num_workers=0, disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=targs, train_dataset=items, data_collator=collate, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # stdout is for the name: value lines
        trainer.train()
    return clock.per_step(args.warmup)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5, help="steps not timed")
    ap.add_argument("--gnn-batch-size", type=int, default=64)
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (a check of the code path, with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="tiny models and inputs (seconds, for --cpu)")
    args = ap.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: needs a CUDA GPU, and torch {torch.__version__} sees none (CUDA build "
              f"{torch.version.cuda}); run it where a GPU is lent, or pass --cpu --tiny to check the code path",
              file=sys.stderr)
        return 2
    if args.cpu:
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the engine picks the device itself: hide any GPU
        torch.set_num_threads(1)  # a code-path check on a shared machine: one thread each, less noise
    if args.tiny:
        args.seq_len, args.batch_size, args.steps, args.warmup, args.gnn_batch_size = 64, 4, 3, 1, 4
    cuda = not args.cpu
    from streamguard.stage import setup_logging

    setup_logging()  # our log lines on stderr; transformers' progress bars off
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    from streamguard.config import GNNConfig, TransformerConfig, load_config
    from streamguard.data.synthetic import generate
    from streamguard.graphs import build_graph
    from streamguard.models.gnn import GNNClassifier, gnn_collate
    from streamguard.models.transformer import TransformerClassifier

    conf = TINY if args.tiny else BASE
    n = args.batch_size * (args.warmup + args.steps)
    items = token_items(n, args.seq_len, conf["vocab_size"])
    opt = TransformerConfig(epochs=1, batch_size=args.batch_size, lr=2e-5, weight_decay=0.01, grad_clip=1.0)
    with tempfile.TemporaryDirectory(prefix="sg-bench-gpu-") as tmp:
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_config(
            RobertaConfig(**conf, num_labels=2, pad_token_id=1, bos_token_id=0, eos_token_id=2)).save_pretrained(tmp)
        # Trainer first: the engine sets torch's global determinism flags (``train.deterministic``) for the process.
        theirs = hf_trainer_per_step(tmp, items, args, cuda)
        tmodel = TransformerClassifier(tmp)
        params = sum(p.numel() for p in tmodel.parameters())
        ours = engine_per_step(tmodel, items, collate, lambda ds: [it["labels"] for it in ds], opt, args.warmup, cuda,
                               "transformer")

    gcfg = GNNConfig(hidden=16, layers=1) if args.tiny else GNNConfig(hidden=256, layers=4)
    gcfg.batch_size, gcfg.epochs, gcfg.lr = args.gnn_batch_size, 1, 1e-3
    samples = generate(args.gnn_batch_size * (args.warmup + args.steps), seed=0)
    graphs = [build_graph(s.func, str(i), s.target) for i, s in enumerate(samples)]
    torch.manual_seed(0)
    gnn = engine_per_step(GNNClassifier(gcfg), graphs, gnn_collate, lambda ds: [int(g.y.view(-1)[0]) for g in ds],
                          gcfg, args.warmup, cuda, "gnn")

    dev = torch.cuda.get_device_name(0) if cuda else "cpu"
    precision = "bf16" if cuda else "fp32"
    print(f"device: {dev}")
    print(f"transformer: roberta-{'tiny' if args.tiny else 'base'} config, {params / 1e6:.3g} M parameters, "
          f"seq {args.seq_len}, batch {args.batch_size}, {precision}, {args.steps} timed steps after {args.warmup}; "
          f"engine deterministic={load_config('production').train.deterministic} (production profile)")
    print(f"engine_transformer_samples_per_s: {args.batch_size / ours:.2f}")
    print(f"hf_trainer_transformer_samples_per_s: {args.batch_size / theirs:.2f}")
    print(f"engine_vs_hf_trainer_throughput_ratio: {theirs / ours:.3f}")
    print(f"gnn: hidden {gcfg.hidden}, {gcfg.layers} layers, batch {args.gnn_batch_size}, "
          f"mean {sum(g.num_nodes for g in graphs) / len(graphs):.0f} nodes per graph")
    print(f"engine_gnn_graphs_per_s: {args.gnn_batch_size / gnn:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
