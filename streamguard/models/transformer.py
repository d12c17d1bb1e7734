"""Transformer classifier: a Hugging Face encoder read in windows, pooled, and a classification head.

Production loads ``microsoft/codebert-base`` (or any local/staged checkpoint)
with ``AutoModelForSequenceClassification.from_pretrained``. ``pretrained:
scratch`` (demo, tests) first *creates* a checkpoint directory — a byte-level
BPE tokenizer trained on the train split with ``tokenizers`` and a small
RoBERTa config with fresh weights, both written with ``save_pretrained`` — and
then loads it through the very same ``from_pretrained`` path. No network.

The whole function, in windows
------------------------------
A function's token sequence (without special tokens) is cut into windows of
``Windowing.window`` positions each -- the tokenizer's special tokens (RoBERTa:
``<s> … </s>``) plus ``window - 2`` content tokens -- starting every ``stride``
content tokens, at most ``max_windows`` of them (tokens past the last window are
dropped: the function is *truncated*). :func:`encode` is the one function that
turns function texts into model inputs (training, evaluation, the fusion's
features, ``predict``/``scan``). A batch holds the real windows of all its
functions back to back (``input_ids [N, L]``, no padding windows reach the
encoder) and ``window_counts [B]``. The encoder reads the windows of a batch in
passes of at most ``window_batch`` windows (``transformer.window_batch``; in
training each pass beyond one is under activation checkpointing, so a batch of
long functions needs the activation memory of one pass); :class:`WindowPooling`
(attention over the windows' first-token states,
masked to each function's own windows) combines them into one embedding per
function, and the model's own classification head turns that into logits. With
one window the pooling weight is exactly 1, so a function that fits one window
gets exactly the logits and embedding of a plain unwindowed pass. The window
settings are saved in the model's ``config.json`` (``streamguard_windowing``), the
pooling weights in ``window_pooling.pt``, so a loaded model windows as it was
trained.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from streamguard.errors import UserError
from streamguard.models.windowing import Windowing

log = logging.getLogger(__name__)


def make_scratch_checkpoint(texts: Sequence[str], out_dir: str | os.PathLike, *, vocab_size: int, hidden: int,
                            layers: int, heads: int, max_length: int, seed: int) -> Path:
    """Train a BPE tokenizer on ``texts`` and save it with a fresh small RoBERTa as a HF checkpoint."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast, RobertaConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                  cls_token="<s>", sep_token="</s>", model_max_length=max_length)
    from tokenizers.processors import RobertaProcessing

    tok._tokenizer.post_processor = RobertaProcessing(("</s>", tok.sep_token_id), ("<s>", tok.cls_token_id))
    tok.save_pretrained(out)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 4,
                        max_position_embeddings=max_length + 2, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=2)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(out)
    return out


WINDOWING_KEY = "streamguard_windowing"
"""The window settings' key in the saved model's ``config.json``."""
POOLING_FILE = "window_pooling.pt"


@dataclass
class Encoded:
    """Function texts as model inputs: each function's windows (token-id lists) and its content-token count."""

    windows: list[list[list[int]]]
    n_tokens: list[int]
    windowing: Windowing

    @property
    def truncated(self) -> list[bool]:
        """Whether each function has tokens beyond its last window."""
        return [n > self.windowing.budget for n in self.n_tokens]


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence (RoBERTa: ``[<s>]``, ``[</s>]``)."""
    probe = "int x;"
    full = tokenizer(probe)["input_ids"]
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare):])
    raise UserError(f"{type(tokenizer).__name__}: cannot locate its special tokens around a sequence")


def encode(texts: Sequence[str], tokenizer, windowing: Windowing) -> Encoded:
    """The one function that turns function texts into transformer inputs (see the module docstring)."""
    texts = [windowing.text(t) for t in texts]
    content = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"] if texts else []
    head, tail = special_tokens(tokenizer)
    w, out = windowing, []
    if len(head) + len(tail) != w.specials:
        raise UserError(f"{type(tokenizer).__name__}: adds {len(head) + len(tail)} special tokens per sequence, "
                        f"the windowing expects {w.specials}")
    for ids in content:
        out.append([head + ids[s:s + w.content] + tail for s in (k * w.stride for k in range(w.count(len(ids))))])
    return Encoded(out, [len(ids) for ids in content], windowing)


class WindowPooling(nn.Module):
    """Attention pooling over each function's window embeddings: ``softmax(v . tanh(W h_w))`` over its own windows.

    ``forward(h [N, H], counts [B]) -> [B, H]``: ``h`` holds the windows of function 0, then of 1 …; a function
    with one window gets its window's embedding unchanged (weight exactly 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        counts = counts.to(h.device)
        if h.shape[0] == counts.shape[0]:  # one window each: nothing to pool
            return h
        width = int(counts.max())
        mask = torch.arange(width, device=h.device)[None, :] < counts[:, None]
        padded = h.new_zeros(counts.shape[0], width, h.shape[-1])
        padded[mask] = h
        scores = self.score(torch.tanh(self.proj(padded))).squeeze(-1).float()
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).to(h.dtype)
        return (weights.unsqueeze(-1) * padded).sum(dim=1)


def _head(hf) -> str:
    """How ``hf`` turns a first-token state into logits: ``roberta`` (a head reading ``features[:, 0]``) or
    ``pooler`` (BERT: the encoder's pooler, dropout, a linear classifier)."""
    if hasattr(getattr(hf, "classifier", None), "out_proj"):
        return "roberta"
    if getattr(hf.base_model, "pooler", None) is not None and isinstance(getattr(hf, "classifier", None), nn.Linear):
        return "pooler"
    raise UserError(f"{type(hf).__name__}: windowing needs a RoBERTa- or BERT-style classification head")


class TransformerClassifier(nn.Module):
    """``forward(batch) -> logits [B, 2]``; ``embed(batch) -> [B, hidden]`` (first-token states pooled over windows).

    ``batch``: ``input_ids``/``attention_mask`` ``[N, L]`` (every window of the batch) and ``window_counts [B]``
    (without it, one window per row). ``windowing``: the window settings (default: those saved with the
    checkpoint; a checkpoint without them -- a hub model, one saved before windowing -- gets one window of
    the encoder's length)."""

    def __init__(self, checkpoint: str | os.PathLike, windowing: Windowing | None = None, window_batch: int = 0):
        super().__init__()
        self.window_batch = int(window_batch)
        from transformers import AutoModelForSequenceClassification

        self.hf = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=2)
        self.hidden_size = self.hf.config.hidden_size
        self.head_kind = _head(self.hf)
        saved = getattr(self.hf.config, WINDOWING_KEY, None)
        if windowing is None:
            windowing = Windowing.from_dict(saved) if saved else Windowing(
                window=min(512, self.hf.config.max_position_embeddings - 2),
                stride=min(512, self.hf.config.max_position_embeddings - 2) - 2, max_windows=1)
        self.windowing = windowing
        self.pool = WindowPooling(self.hidden_size)
        pooling = Path(checkpoint) / POOLING_FILE
        if pooling.is_file():
            self.pool.load_state_dict(torch.load(pooling, map_location="cpu", weights_only=True))

    def _first_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.hf.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]

    def _windows(self, batch: dict) -> torch.Tensor:
        """First-token state of every window ``[N, hidden]``, in passes of at most ``window_batch`` windows."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        size = self.window_batch
        if size <= 0 or ids.shape[0] <= size:
            return self._first_states(ids, mask)
        from torch.utils.checkpoint import checkpoint

        recompute = self.training and torch.is_grad_enabled()
        out = []
        for s in range(0, ids.shape[0], size):
            i, m = ids[s:s + size], mask[s:s + size]
            out.append(checkpoint(self._first_states, i, m, use_reentrant=False) if recompute
                       else self._first_states(i, m))
        return torch.cat(out)

    def embed(self, batch: dict) -> torch.Tensor:
        h = self._windows(batch)
        counts = batch.get("window_counts")
        return h if counts is None else self.pool(h, counts)

    def forward(self, batch: dict) -> torch.Tensor:
        pooled = self.embed(batch)
        if self.head_kind == "roberta":
            return self.hf.classifier(pooled[:, None, :])
        return self.hf.classifier(self.hf.dropout(self.hf.base_model.pooler(pooled[:, None, :])))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 2]`` from :meth:`embed`'s output, as ``forward`` computes them from the same state (a
        RoBERTa-style head reads the first token's state; a BERT-style one its pooler's), so inference scores
        and embeds with one encoder pass."""
        first = embedding[:, None, :]
        if hasattr(self.hf.classifier, "out_proj"):
            return self.hf.classifier(first)
        return self.hf.classifier(self.hf.dropout(self.hf.base_model.pooler(first)))

    def save(self, out_dir: str | os.PathLike, tokenizer) -> None:
        setattr(self.hf.config, WINDOWING_KEY, self.windowing.to_dict())
        self.hf.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        torch.save(self.pool.state_dict(), Path(out_dir) / POOLING_FILE)


def load_tokenizer(checkpoint: str | os.PathLike, max_length: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    tok.model_max_length = max_length
    return tok


class TokenDataset(torch.utils.data.Dataset):
    """Functions as windows (:func:`encode`); items are dicts of ``windows`` (token-id lists) and ``labels``.

    ``windowing`` an int: one window of that many positions (plain truncation)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, windowing: Windowing | int):
        if isinstance(windowing, int):
            windowing = Windowing(window=windowing, stride=windowing - 2, max_windows=1)
        enc = encode(texts, tokenizer, windowing)
        self.windowing = windowing
        self.windows = enc.windows
        self.n_tokens = enc.n_tokens
        self.labels = [int(y) for y in labels]
        self.pad_id = tokenizer.pad_token_id
        self.truncated = sum(enc.truncated)

    @property
    def lengths(self) -> list[int]:
        """Positions per function over all its windows (the engine buckets batches by them)."""
        return [sum(len(w) for w in ws) for ws in self.windows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"windows": self.windows[i], "labels": self.labels[i]}

    def collate(self, items: list[dict]) -> dict:
        return collate_windows(items, self.pad_id)


def collate_windows(items: list[dict], pad_id: int, width: int | None = None) -> dict:
    """Items of :class:`TokenDataset` -> ``input_ids``/``attention_mask [N, L]`` (all windows, right-padded to the
    longest, or to ``width``), ``window_counts [B]``, ``labels [B]``."""
    wins = [w for it in items for w in it["windows"]]
    width = max(width or 0, max(len(w) for w in wins))
    ids = torch.full((len(wins), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(wins), width), dtype=torch.long)
    for r, w in enumerate(wins):
        ids[r, :len(w)] = torch.tensor(w, dtype=torch.long)
        mask[r, :len(w)] = 1
    return {"input_ids": ids, "attention_mask": mask,
            "window_counts": torch.tensor([len(it["windows"]) for it in items], dtype=torch.long),
            "labels": torch.tensor([it["labels"] for it in items], dtype=torch.long)}
