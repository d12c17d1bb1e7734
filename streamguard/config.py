"""Typed configuration, loaded from YAML profiles, every field overridable.

Profiles live in ``streamguard/configs/<name>.yaml`` (``demo``, ``test``,
``production``) or at any YAML path. Overrides are ``section.field=value``
strings (CLI ``--set``) or a nested dict (pipeline parameter ``overrides``);
values are parsed as YAML scalars and type-checked against the dataclasses.
A field with a fixed set of values is a ``Literal``: any other value stops the
load with one line naming the source, the field path, the value and the
allowed values (exit 2 from the CLI), not hours later where the value is used.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from streamguard.errors import UserError
from streamguard.typed import build

PROFILE_DIR = Path(__file__).parent / "configs"

SplitStrategy = Literal["auto", "published", "random", "project", "time"]
"""``data.split_strategy`` (``streamguard.data.splits``)."""
AmpMode = Literal["auto", "off", "bf16", "fp16"]
"""``train.amp`` (``streamguard.train.amp.make_amp``)."""
CollapseAction = Literal["stop", "reduce_lr"]
LRFinderRule = Literal["valley", "steepest"]
"""``train.lr_finder_rule`` (``streamguard.train.lr_finder.SUGGESTIONS``)."""
"""``train.collapse.action`` (``streamguard.train.collapse.handle_collapse``)."""
GateMetric = Literal["pr_auc", "roc_auc", "f1", "precision", "recall", "accuracy", "tpr_at_fpr_0.5pct",
                     "tpr_at_fpr_1pct", "pair_correct", "vd_s", "brier", "ece"]
"""``publish.metric`` (``streamguard.gate``): the last three are better when lower."""
GateRule = Literal["every", "mean"]
"""``publish.rule`` (``streamguard.gate``)."""


@dataclass
class DataConfig:
    max_bad_share: float = 0.05
    """Fail ingest when quarantined rows exceed this share of all rows."""
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train/valid/test fractions for the random split."""
    split_seed: int = 0
    """Seed of the split (fixed across training seeds, so all seeds see one split)."""
    max_func_bytes: int = 1_000_000
    """Functions longer than this are quarantined."""
    split_strategy: SplitStrategy = "auto"
    """auto (published when the input carries a split, else random) | published | random (seeded, stratified by
    label) | project (no project in two splits) | time (oldest functions train, newest test; needs ``date``)."""
    dedup: bool = True
    """Remove conflicting-label copies, exact and whitespace/comment-normalised duplicates before splitting."""
    max_identical_view_share: float = 0.05
    """Data check (ingest's data card, pre-flight): warn when more than this share of vulnerable/fixed pairs are
    identical inputs to a model family (``streamguard.data.views``); the warning names the setting that helps."""


@dataclass
class OptimConfig:
    """Fields shared by every trained model."""

    epochs: int = 5
    batch_size: int = 16
    lr: float | None = None
    """Fixed learning rate; None -> LR cache, then LR finder, then fallback_lr."""
    fallback_lr: float = 1e-3
    lr_min: float = 1e-5
    lr_max: float = 1e-2
    weight_decay: float = 0.01
    patience: int = 3
    """Early stopping: epochs without validation-F1 improvement."""
    min_delta: float = 0.0
    """An epoch improves on the best so far (its weights are kept, patience restarts) only when its validation
    F1 is higher by more than this."""
    grad_clip: float = 1.0


@dataclass
class TransformerConfig(OptimConfig):
    pretrained: str = "microsoft/codebert-base"
    """HF model id or local path; 'scratch' trains a small RoBERTa + BPE tokenizer on the train split."""
    max_length: int = 512
    """Encoder positions (the scratch model is built with this many; CodeBERT has 512)."""
    window: int | None = None
    """Positions per window, the two special tokens included; None: ``max_length``. The encoder reads every
    window of a function and a learned attention pooling combines them (``models.transformer``)."""
    stride: int | None = None
    """Content tokens from one window's start to the next; None: ``window - 2`` (back to back, no overlap)."""
    strip_comments: bool = True
    """Remove C comments before tokenizing (layout kept; ``streamguard.data.hygiene.strip_comments``), in training,
    evaluation, predict and scan alike (saved with the model). A fix that only touches a comment is then no
    difference to the transformer -- as to the C lexer and the GNN -- and a comment naming the bug cannot leak
    the label. False: the encoder reads comments too (a pretrained CodeBERT knows their words)."""
    max_windows: int = 24
    """Windows per function at most; tokens beyond them are dropped (``max_windows x (window - 2)`` content tokens
    are seen). Cost grows linearly with the windows a function needs (README, "The whole function")."""
    window_batch: int = 32
    """Windows the encoder reads in one pass; a batch with more is read in chunks of this many, each under
    activation checkpointing in training (recomputed in the backward pass: about a third more time for such a
    batch, activation memory of one chunk instead of all). 0: all windows of a batch in one pass. Memory only:
    the results are the same."""
    scratch_hidden: int = 128
    scratch_layers: int = 2
    scratch_heads: int = 4
    scratch_vocab: int = 2000
    fallback_lr: float = 2e-5
    lr_min: float = 1e-6
    lr_max: float = 1e-3


@dataclass
class GNNConfig(OptimConfig):
    hidden: int = 128
    layers: int = 3
    dropout: float = 0.1
    max_nodes: int = 4000


@dataclass
class FusionConfig(OptimConfig):
    min_delta: float = 0.01
    """The head starts as its better branch (validated before training); a trained epoch replaces that only
    when its out-of-fold validation F1 is higher by more than this (differences of a sample or two are noise)."""
    patience: int = 5
    folds: int = 5
    """Cross-fitting folds of the validation split the head learns from (at least 2; ``families.fusion``)."""
    embeddings: bool = False
    """Also feed both branches' pooled embeddings to the head (an MLP correction) besides their logit margins."""
    hidden: int = 128
    """Hidden width of the embedding MLP (with ``embeddings``)."""
    dropout: float = 0.1


@dataclass
class CollapseConfig:
    """Training-collapse detection (``streamguard.train.collapse``) and what the engine does about it."""

    action: CollapseAction = "stop"
    """stop (write collapse_report.json, exit 3) | reduce_lr (multiply the LR by ``lr_factor`` and go on)."""
    lr_factor: float = 0.1
    """reduce_lr: multiply the LR by this on each collapse event ..."""
    min_lr: float = 1e-8
    """... and stop instead once the LR would fall below this."""
    window: int = 50
    """Steps in the running loss mean / gradient-norm median."""
    loss_factor: float = 4.0
    """A loss above this multiple of the running mean is a spike ..."""
    loss_min_delta: float = 1.0
    """... when it is also this much above the running mean (small losses are noisy in ratio)."""
    loss_min_steps: int = 1
    """Losses seen before spikes are checked (1: the first loss is the reference, so a run that
    diverges from step 2 on is caught before it can pollute the mean)."""
    grad_factor: float = 50.0
    """A gradient norm above this multiple of the running median explodes."""
    grad_min_steps: int = 5
    """Finite gradient norms seen before explosions are checked."""
    patience: int = 2
    """Consecutive spiking steps (loss or gradient) before flagging."""
    nonfinite_grad_patience: int = 10
    """Consecutive non-finite gradient norms before flagging (fp16 loss scaling skips a few)."""
    cooldown_steps: int = 20
    """After a flag, ratio checks rest this many steps (NaN/Inf checks do not)."""
    min_output_std: float = 1e-5
    """Evaluation: outputs whose std (logit margin or probability) is below this have collapsed."""
    min_eval_samples: int = 2
    """Evaluation checks need at least this many samples."""
    single_class_is_collapse: bool = False
    """True: a trained model that predicts one class and ranks at chance (valid ROC-AUC <= 0.55) stops with
    exit 3. Off by default (a warning, recorded in the training metadata): on hard real data (vulnerable/fixed
    pairs) an honest model ranks at chance and its F1-tuned threshold often predicts one class -- every seed
    of the demo-size transformer and GNN on debian_pairs did -- while a broken loop is what pre-flight's
    tiny-overfit probe catches and constant or non-finite outputs still stop training here."""
    recent_size: int = 20
    """Step records kept for the collapse report."""


@dataclass
class TrainConfig:
    """Engine settings shared by all models."""

    amp: AmpMode = "auto"
    """auto (bf16 on CUDA where supported, else fp16 + GradScaler; off on CPU) | off | bf16 | fp16 (force that
    precision on CUDA; on CPU training stays fp32)."""
    deterministic: bool = True
    checkpoint_every_steps: int = 50
    lr_finder: bool = True
    lr_finder_steps: int = 100
    lr_finder_rule: LRFinderRule = "valley"
    """How the sweep becomes a learning rate: valley (half-way along the longest falling stretch of the loss;
    fastai's default) | steepest (where the loss falls fastest; moved more by the noise of a short sweep)."""
    lr_cache_ttl_hours: float = 168.0
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    num_threads: int = 0
    """torch intra-op threads; 0 = library default."""
    dist_timeout_s: float = 1800.0
    """Distributed runs (torchrun): how long a rank waits for the others to join and at any collective before
    it fails. Must exceed the longest wait of the other ranks on rank 0's writes (final checkpoint and model
    export; an object-store outage up to ``store.retry_budget_s``)."""


@dataclass
class StoreConfig:
    """Object-store client settings (``streamguard.storage.retry``); they never change results or run keys."""

    retry_budget_s: float = 180.0
    """Transient store errors (refused, reset, timeouts, 5xx, SlowDown) are retried with backoff for this long
    per operation; past it a stage exits 5 and its next attempt resumes from the last checkpoint. A background
    checkpoint write past it is skipped; at the end of training the final checkpoint may first wait for the
    write in flight, so a training task gives up after at most about twice this."""
    timeout_s: float = 30.0
    """Connect and read timeout of one S3 request (a stalled connection is a transient error after this)."""


@dataclass
class PublishConfig:
    """The ``publish`` stage (``streamguard.publish``): versioned bundles, the champion/challenger gate, Model
    Registry. The registry's address is cluster configuration (``MODEL_REGISTRY_URL``), never a profile field."""

    model_name: str = "streamguard"
    """Published under ``models/<model_name>/<version>/`` of the store and under this name in Model Registry."""
    metric: GateMetric = "pr_auc"
    """Picks the seed to publish (on the validation split) and decides the gate (on the gate datasets); the head
    model's number, at its own validation-tuned threshold for threshold metrics."""
    margin: float = 0.0
    """The challenger replaces the champion only when better by more than this (in the metric's units)."""
    rule: GateRule = "every"
    """every: better by more than ``margin`` on every gate dataset (the new test split and each ``eval_uris``
    set) where the metric is defined | mean: on the mean over those datasets."""
    n_boot: int = 1000
    """Bootstrap resamples of the card's intervals and of the gate's paired differences (0: none)."""
    settle_s: float = 2.0
    """After writing the champion pointer, wait this long and read it back; a pointer a racing publisher wrote
    meanwhile is compared again (docs/kubeflow.md, "Champion and challenger"). Must exceed the time one pointer
    write takes."""
    max_rounds: int = 5
    """Pointer conflicts resolved (re-read, re-compared) at most this many times before giving up unpromoted."""
    incompatible_champion: Literal["refuse", "promote"] = "refuse"
    """When this code cannot load the champion (older bundle format or graph builder): refuse the challenger
    (keep the champion) | promote it (the champion cannot be compared)."""
    registry_failure: Literal["warn", "fail"] = "warn"
    """A Model Registry that is configured but down or refusing, after the store's retry policy: warn (one line;
    the store publish stands; exit 0) | fail (the same line, then exit 7 after the store publish)."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    gnn: GNNConfig = field(default_factory=GNNConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["gnn.epochs=3", "train.amp=off"]`` -> nested dict of the raw value strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected section.field=value")
        path, raw = item.split("=", 1)
        node = out
        parts = path.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = raw
    return out


ENV_FIELDS = {"LR_CACHE_TTL_HOURS": ("train", "lr_cache_ttl_hours"),
              "STORE_RETRY_BUDGET_S": ("store", "retry_budget_s")}
"""Cluster settings from the ``streamguard-config`` ConfigMap (environment) that override the profile."""


def load_config(profile: str = "demo", overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> Config:
    """Load a profile by name or path; then the ConfigMap environment (ENV_FIELDS); then ``overrides``;
    then ``--set`` items (each later source wins)."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILE_DIR / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise UserError(f"profile {profile!r}: no such file {path} (known profiles: {known})")
    try:
        raw = yaml.safe_load(path.read_bytes()) or {}  # bytes: PyYAML handles a BOM, UTF-16 and CRLF
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at top level")
    cfg = _build(raw, str(path))
    env = {f"{sec}.{field}": os.environ[var] for var, (sec, field) in ENV_FIELDS.items() if os.environ.get(var)}
    if env:
        names = ", ".join(var for var in ENV_FIELDS if os.environ.get(var))
        cfg = _build(parse_set([f"{k}={v}" for k, v in env.items()]), f"environment {names}", base=cfg, raw=True)
    if overrides:
        cfg = _build(overrides, "overrides", base=cfg)
    if sets:
        cfg = _build(parse_set(sets), "--set", base=cfg, raw=True)
    return cfg


def _build(data: Any, source: str, *, base: Config | None = None, raw: bool = False) -> Config:
    """``build`` with the source (profile file, environment, overrides, --set) at the front of an error."""
    try:
        return build(Config, data, "", base=base, raw=raw)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def config_from_dict(d: dict[str, Any]) -> Config:
    return build(Config, d, "")


def store_settings() -> StoreConfig:
    """``StoreConfig`` for code that opens a store without a loaded profile: defaults, then the environment."""
    env = [f"{sec}.{name}={os.environ[var]}" for var, (sec, name) in ENV_FIELDS.items()
           if sec == "store" and os.environ.get(var)]
    return build(Config, parse_set(env), "", raw=True).store if env else StoreConfig()
