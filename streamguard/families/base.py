"""The ``Family`` protocol and the small types it speaks in.

A family is one kind of model StreamGuard trains (transformer, GNN, fusion …).
It says what its training reads (``inputs``), builds its datasets and model,
collates batches, reads labels, names what its learning rate depends on,
saves and loads the trained model, and hands the pre-flight probes a model and
batches. Everything else -- the engine, the checkpoint, the LR decision, the
outputs, the CLI and the pipeline's training components -- is shared and goes
through :func:`streamguard.training.train`. A family is a plain object (no base
class to inherit); the registry is in :mod:`streamguard.families`.

Inference (``streamguard predict | evaluate | scan``, :mod:`streamguard.bundle`) asks a
family for a :class:`Predictor`: its trained model and its *featurisation* -- the one
function of the family that turns :class:`Functions` (Samples) into the items its model
reads. ``datasets`` goes through that same function, so a model scores new functions
exactly as it was trained and tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

from streamguard.errors import UserError
from streamguard.jsonio import read_json

if TYPE_CHECKING:
    from torch import nn

    from streamguard.config import Config, OptimConfig
    from streamguard.data.samples import Sample
    from streamguard.data.views import View
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


class Featurised(NamedTuple):
    """A family's model inputs for some functions: the items, in order, and the collate that batches them."""

    items: Sequence
    collate: Callable[[list], dict]


class Functions:
    """Functions to featurise, in order: their Samples, items some family already has for them, and a cache.

    ``given``: items by family name made elsewhere for these same samples, in the same order (training: the
    GNN's graphs from the ``build-graphs`` shards); a family uses them instead of making its own. ``memo``
    keeps what a family made, so two families that need it (the GNN and the fusion's GNN branch) make it
    once per batch of functions.
    """

    def __init__(self, samples: Sequence[Sample], given: Mapping[str, Sequence] | None = None):
        self.samples = list(samples)
        self.given = dict(given or {})
        for name, items in self.given.items():
            if len(items) != len(self.samples):
                raise ValueError(f"given {name} items: {len(items)} for {len(self.samples)} samples")
        self._memo: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the same object afterwards."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


@dataclass
class Predictor:
    """A trained model of one family, ready to score functions (what a bundle holds per family)."""

    family: str
    model: nn.Module
    """Loaded on CPU, in eval mode (``forward(batch) -> logits [B, 2]``)."""
    featurise: Callable[[Functions], Featurised]
    """The family's featurisation (the function its ``datasets`` uses), with this model's settings."""
    card: dict[str, Any]
    """The model's ``model_card.json`` (threshold, seed, metrics, data fingerprint …)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """What the featurisation depends on (tokenizer and window settings, graph builder and node cap …):
    recorded in the bundle manifest."""

    @property
    def threshold(self) -> float:
        """The decision threshold tuned on validation (``prob >= threshold`` is vulnerable)."""
        return float(self.card["threshold"])

    def embed(self, fns: Functions) -> Any:
        """``model.embed`` of every function of ``fns`` (``[N, d]`` float, CPU), made once per ``fns``."""
        def make():
            items = self.featurise(fns)
            return embed_items(self.model, items.items, items.collate)

        return fns.memo(f"{self.family}:embed", make)

    def logits(self, fns: Functions) -> Any:
        """``[N, 2]`` logits of every function of ``fns`` (float, CPU, in order), made once per ``fns``.

        A model with ``classify`` (logits from its ``embed`` output, as its ``forward`` computes them) runs
        its encoder once for both its own score and the embeddings a head built on it reads."""
        def make():
            import torch

            if hasattr(self.model, "embed") and hasattr(self.model, "classify"):
                emb = self.embed(fns)
                if not len(emb):
                    return torch.zeros(0, 2)
                device = next(self.model.parameters()).device
                with torch.no_grad():
                    return self.model.classify(emb.to(device)).float().cpu()
            items = self.featurise(fns)
            logits = embed_items(self.model, items.items, items.collate, method="forward")
            return logits if len(logits) else torch.zeros(0, 2)

        return fns.memo(f"{self.family}:logits", make)

    def probs(self, fns: Functions) -> Any:
        """Vulnerable-class probability of every function of ``fns`` (numpy, in order): softmax of :meth:`logits`."""
        def make():
            import torch

            return torch.softmax(self.logits(fns), dim=-1)[:, 1].numpy()

        return fns.memo(f"{self.family}:probs", make)


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

    def views(self, ctx: ProbeContext, split: str) -> View:
        """What the model sees of each sample of ``split`` (in split order): a key per sample (equal keys: identical
        inputs), whether it is truncated, the setting that shows more, and each sample's cost (the tiny overfit
        draws distinct, cheap samples; pre-flight's data check counts identical pairs)."""
        ...

    def predictor(self, model_dir: str | Path, requires: Mapping[str, Predictor]) -> Predictor:
        """The model in ``model_dir`` (``save`` + ``model_card.json``) as a :class:`Predictor`.

        ``requires``: the predictors of the families in :attr:`requires` (fusion: the transformer's and
        the GNN's of the same seed), already loaded. Refuses (:class:`UserError`, one line) a model whose
        featurisation this code cannot reproduce (e.g. another graph builder version).
        """
        ...

    def smoke_batches(self, ctx: ProbeContext, indices: list[int], batch_size: int) -> tuple[nn.Module, list[dict]]:
        """A model built as training builds it, and batches of the train items at ``indices`` (tiny overfit)."""
        ...

    def memory_batch(self, ctx: ProbeContext, batch_size: int) -> tuple[nn.Module, dict, dict[str, Any]]:
        """The model, one batch of ``batch_size`` of its largest train items, and that batch's shape."""
        ...


EMBED_BATCH = 64
"""Items per forward pass when a trained model embeds or scores functions."""


def embed_items(model: nn.Module, items: Sequence, collate: Callable[[list], dict],
                batch_size: int = EMBED_BATCH, method: str = "embed") -> Any:
    """``model.embed`` (or another ``method`` of it: ``forward`` gives logits) of every item (``[N, d]``
    float32 on CPU, in order), ``batch_size`` items a pass, in eval mode under ``no_grad``; every module's
    train/eval mode is restored afterwards (a loaded HF model is in eval mode inside a training wrapper)."""
    import torch

    from streamguard.train.interface import move_to

    modes = [(m, m.training) for m in model.modules()]
    device = next(model.parameters()).device
    out = []
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                batch = collate([items[i] for i in range(start, min(start + batch_size, len(items)))])
                out.append(getattr(model, method)(move_to(batch, device)).float().cpu())
    finally:
        for m, training in modes:
            m.training = training
    return torch.cat(out) if out else torch.zeros(0)


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """A trained model's ``model_card.json``; a missing one is a UserError naming the directory."""
    card = Path(model_dir) / "model_card.json"
    if not card.is_file():
        raise UserError(f"{card}: missing; {model_dir} is not a model directory written by `streamguard train-*`")
    return read_json(card)


def chunks(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    size = max(1, int(size))
    return [items[i:i + size] for i in range(0, len(items), size)]
