"""Transformer classifier: a Hugging Face encoder with a classification head.

Production loads ``microsoft/codebert-base`` (or any local/staged checkpoint)
with ``AutoModelForSequenceClassification.from_pretrained``. ``pretrained:
scratch`` (demo, tests) first *creates* a checkpoint directory — a byte-level
BPE tokenizer trained on the train split with ``tokenizers`` and a small
RoBERTa config with fresh weights, both written with ``save_pretrained`` — and
then loads it through the very same ``from_pretrained`` path. No network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

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


class TransformerClassifier(nn.Module):
    """``forward(batch) -> logits [B, 2]``; ``embed(batch) -> [B, hidden]`` (first-token state)."""

    def __init__(self, checkpoint: str | os.PathLike):
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        self.hf = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=2)
        self.hidden_size = self.hf.config.hidden_size

    def forward(self, batch: dict) -> torch.Tensor:
        return self.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def embed(self, batch: dict) -> torch.Tensor:
        out = self.hf.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state[:, 0]

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 2]`` from :meth:`embed`'s output, as ``forward`` computes them from the same state (a
        RoBERTa-style head reads the first token's state; a BERT-style one its pooler's), so inference scores
        and embeds with one encoder pass."""
        first = embedding[:, None, :]
        if hasattr(self.hf.classifier, "out_proj"):
            return self.hf.classifier(first)
        return self.hf.classifier(self.hf.dropout(self.hf.base_model.pooler(first)))

    def save(self, out_dir: str | os.PathLike, tokenizer) -> None:
        self.hf.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def load_tokenizer(checkpoint: str | os.PathLike, max_length: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    tok.model_max_length = max_length
    return tok


class TokenDataset(torch.utils.data.Dataset):
    """Pre-tokenised samples; items are dicts of ``input_ids`` (list) and ``labels``."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int):
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.input_ids = enc["input_ids"]
        self.labels = [int(y) for y in labels]
        self.pad_id = tokenizer.pad_token_id
        self.truncated = sum(len(ids) >= max_length for ids in self.input_ids)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}

    def collate(self, items: list[dict]) -> dict:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for r, it in enumerate(items):
            n = len(it["input_ids"])
            ids[r, :n] = torch.tensor(it["input_ids"], dtype=torch.long)
            mask[r, :n] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.tensor([it["labels"] for it in items], dtype=torch.long)}
