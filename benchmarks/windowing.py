"""What the whole function costs: the windowed transformer's time and memory per function, by length.

The demo-size model (``demo`` profile: scratch RoBERTa, hidden 128, 2 layers, 4 heads, windows of 256
positions = 254 content tokens) on one CPU thread; one function of ``n`` windows (``n x 254`` BPE tokens)
per batch, windows full. Per ``n`` it prints ``name: value`` lines:

* ``windows_<n>_eval_ms``: forward in eval mode (``predict``/``scan``/evaluation), median of repeats;
* ``windows_<n>_train_ms``: forward + backward + AdamW step (training);
* ``windows_<n>_activation_mib``: the activations autograd keeps for the backward pass (the bytes of every
  tensor saved for backward, counted once; what training adds on top of the weights and optimizer state,
  independent of the machine's load);
* ``windows_<n>_vs_1_train_ratio``: training time relative to one window.

Time and memory grow linearly with the number of windows (each window is one encoder sequence; attention
stays within a window).

Usage: python benchmarks/windowing.py [--windows 1,2,4,8,16,32,48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", default="1,2,4,8,16,32,48")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from streamguard.config import load_config
    from streamguard.data.synthetic import generate
    from streamguard.models.transformer import (
        TransformerClassifier,
        Windowing,
        collate_windows,
        load_tokenizer,
        make_scratch_checkpoint,
    )

    torch.set_num_threads(1)
    tc = load_config("demo").transformer
    with tempfile.TemporaryDirectory(prefix="sg-bench-win-") as tmp:
        texts = [s.func for s in generate(200, seed=0)]
        ckpt = make_scratch_checkpoint(texts, tmp, vocab_size=tc.scratch_vocab, hidden=tc.scratch_hidden,
                                       layers=tc.scratch_layers, heads=tc.scratch_heads, max_length=tc.max_length,
                                       seed=0)
        tok = load_tokenizer(ckpt, tc.max_length)
        torch.manual_seed(0)
        model = TransformerClassifier(ckpt, Windowing.from_config(tc))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        print(f"model_parameters: {sum(p.numel() for p in model.parameters())}")
        print(f"window_positions: {model.windowing.window}")
        base_train = None
        for n in [int(x) for x in args.windows.split(",")]:
            ids = torch.randint(5, len(tok), (model.windowing.content,)).tolist()
            item = {"windows": [[tok.cls_token_id] + ids + [tok.sep_token_id]] * n, "labels": 1}
            batch = collate_windows([item], tok.pad_token_id)
            model.eval()
            with torch.no_grad():
                model(batch)
                ev = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    model(batch)
                    ev.append(time.perf_counter() - t)
            model.train()
            tr = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
                opt.step()
                tr.append(time.perf_counter() - t)
            opt.zero_grad(set_to_none=True)
            saved: dict[tuple, int] = {}

            def pack(t: torch.Tensor, saved=saved):
                saved[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
            del loss
            train_ms = 1000 * statistics.median(tr)
            base_train = base_train or train_ms
            print(f"windows_{n}_eval_ms: {1000 * statistics.median(ev):.1f}")
            print(f"windows_{n}_train_ms: {train_ms:.1f}")
            print(f"windows_{n}_activation_mib: {sum(saved.values()) / 2**20:.1f}")
            print(f"windows_{n}_vs_1_train_ratio: {train_ms / base_train:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
