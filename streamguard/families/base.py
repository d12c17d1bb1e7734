"""The ``Family`` protocol and the small types it speaks in.

A family is one kind of model StreamGuard trains (transformer, GNN, fusion …).
It says what its training reads (``inputs``), builds its datasets and model,
collates batches, reads labels, names what its learning rate depends on,
saves and loads the trained model, and hands the pre-flight probes a model and
batches. Everything else -- the engine, the checkpoint, the LR decision, the
outputs, the CLI and the pipeline's training components -- is shared and goes
through :func:`streamguard.training.train`. A family is a plain object (no base
class to inherit); the registry is in :mod:`streamguard.families`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from streamguard.config import Config, OptimConfig
    from streamguard.smoke import ProbeContext
    from streamguard.storage import ObjectStore


@dataclass(frozen=True)
class Input:
    """A directory a family's training reads besides the ingested data (``data``).

    ``name`` is its key in :attr:`RunContext.inputs` and the KFP component's
    parameter; ``flag`` and ``help`` make its ``streamguard train-<family>`` option.
    """

    name: str
    flag: str
    help: str

    @property
    def dest(self) -> str:
        """The argparse attribute of ``flag`` (``--gnn-dir`` -> ``gnn_dir``)."""
        return self.flag.lstrip("-").replace("-", "_")


GRAPHS = Input("graphs", "--graphs", "graphs directory from build-graphs")
"""The program graphs (``streamguard build-graphs``), read by the GNN and the fusion."""


@dataclass
class RunContext:
    """What a family sees of one training run."""

    cfg: Config
    seed: int
    inputs: Mapping[str, str]
    """``data`` (the ingested data directory) and one directory per :attr:`Family.inputs` entry, by name."""
    fingerprint: str
    """The ingested data's fingerprint (``data_report.json``)."""
    workdir: Path
    """A temporary directory that lives as long as the run (scratch checkpoints …)."""
    store: ObjectStore | None = None

    @property
    def data_dir(self) -> str:
        return self.inputs["data"]


@dataclass
class Datasets:
    """A family's three splits, as the engine trains on them, and what the outputs say about them."""

    train: Sequence
    valid: Sequence
    test: Sequence
    test_ids: list[str]
    """Sample id of each test item, in order (``predictions.jsonl``'s ``idx``)."""
    test_pair_ids: list[str | None]
    """Vulnerable/fixed pair id of each test item (pair metrics); None where a sample has none."""
    lengths: Sequence[int] | None = None
    """Per-item sizes of ``train``: the engine buckets batches by them (token counts); None: no bucketing."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Extra entries of ``training_metadata.json`` (next to ``data_fingerprint``)."""
    parts: dict[str, Any] = field(default_factory=dict)
    """What making the data produced that ``build``/``collate``/``save`` need (the transformer's tokenizer …)."""


@runtime_checkable
class Family(Protocol):
    """One trainable model family. Methods get the :class:`RunContext` of the run they serve."""

    name: str
    """Registry key, ``train-<name>`` command, checkpoint and model-card ``family``, metrics ``family``."""
    inputs: tuple[Input, ...]
    """Directories its training reads besides ``data`` (each a required CLI option and component input)."""
    requires: tuple[str, ...]
    """Families whose models this one is built on (fusion: transformer, gnn); their probes build them too."""
    memory_probe: bool
    """Whether pre-flight runs its single-batch memory check by default."""
    initial_candidate: bool
    """Whether the untrained model competes with the trained epochs (``TrainJob.initial_candidate``): a model
    that starts as a good answer (the fusion starts as its better branch) is exported as it started unless
    training beats it on validation."""

    def optim_config(self, cfg: Config) -> OptimConfig:
        """Its optimisation settings (epochs, batch size, lr …): its section of the config."""
        ...

    def datasets(self, run: RunContext) -> Datasets:
        """Read the inputs and make the train/valid/test items."""
        ...

    def build(self, run: RunContext, data: Datasets) -> nn.Module:
        """A fresh model for ``run.seed`` (``forward(batch) -> logits [B, 2]``)."""
        ...

    def collate(self, data: Datasets) -> Callable[[list], dict]:
        """Items -> a batch dict with ``labels`` and whatever the model reads."""
        ...

    def labels(self, items: Sequence) -> list[int]:
        """The 0/1 label of every item of a split, in order."""
        ...

    def lr_key_parts(self, run: RunContext, model: nn.Module) -> dict[str, Any]:
        """What the right learning rate depends on besides the data (model, its config …): the LR-cache key."""
        ...

    def save(self, run: RunContext, model: nn.Module, data: Datasets, model_dir: Path) -> None:
        """Write the trained model into ``model_dir`` (``model_card.json`` is written by ``train``)."""
        ...

    def card_extra(self, run: RunContext) -> dict[str, Any]:
        """Family-specific entries of ``model_card.json``."""
        ...

    def load(self, model_dir: str | Path) -> nn.Module:
        """The model ``save`` wrote, on CPU, in eval mode."""
        ...

    def smoke_batches(self, ctx: ProbeContext, indices: list[int], batch_size: int) -> tuple[nn.Module, list[dict]]:
        """A model built as training builds it, and batches of the train items at ``indices`` (tiny overfit)."""
        ...

    def memory_batch(self, ctx: ProbeContext, batch_size: int) -> tuple[nn.Module, dict, dict[str, Any]]:
        """The model, one batch of ``batch_size`` of its largest train items, and that batch's shape."""
        ...


def chunks(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    size = max(1, int(size))
    return [items[i:i + size] for i in range(0, len(items), size)]
