"""Model bundles: one self-contained directory that scores C functions (``predict``, ``evaluate``, ``scan``).

A bundle holds one seed's head model (the fusion) together with every model it
is built on (that seed's transformer and GNN), each exactly as training wrote
it, plus a manifest::

    bundle.json        the manifest (below); written last, so its presence marks a complete bundle
    transformer/       HF save_pretrained + tokenizer + model_card.json
    gnn/               model.pt + config.json + model_card.json
    fusion/            model.pt + config.json + model_card.json
    train_index.txt    code keys (``hygiene.code_key``) of the training split, one a line: what
                       ``evaluate`` removes from another dataset as seen in training

``bundle.json``: ``format`` (:data:`BUNDLE_FORMAT`), ``head`` (the family whose
probability is "the" score) and ``families`` (registry order), ``graph_builder``
(:data:`~streamguard.graphs.BUILDER_VERSION`) and ``max_nodes``, ``settings`` per
family (tokenizer and window settings, graph builder and node cap …, as each
family's predictor reports them), ``thresholds`` per family (tuned on validation),
the SARIF ``rule``, and a ``card``: data fingerprint, code version, seed, each
family's validation and test metrics, lineage.

Which families a bundle holds and how each is loaded and featurised come from the
family registry (:meth:`~streamguard.families.base.Family.predictor`); nothing here
names a family. A bundle is a plain directory tree: :func:`upload_bundle` /
:func:`download_bundle` copy it to / from an object store prefix, and
:func:`load_bundle` takes a path or an ``s3://bucket/prefix`` URI, or a champion pointer. A bundle whose
format or graph builder version differs from this code's refuses to load with one
line (:class:`~streamguard.errors.UserError`, exit 2).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from streamguard import __version__, families
from streamguard.data.samples import Sample
from streamguard.errors import StreamGuardError, UserError
from streamguard.families.base import Functions, Predictor, chunks, read_card
from streamguard.jsonio import read_json, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
TRAIN_INDEX = "train_index.txt"
DEFAULT_BATCH = 64
"""Functions scored per step (each family batches its own items within a step)."""

RULE = {
    "id": "streamguard/vulnerable-function",
    "name": "PotentiallyVulnerableFunction",
    "short": "Function the StreamGuard model scores as likely vulnerable",
    "full": ("A learned detector (a transformer over the tokens and a graph neural network over the AST, control "
             "and data flow, fused) gave this function a score at or above the bundle's validation-tuned "
             "threshold. The score is a model's probability, not a proof: review the function."),
    "level": "warning",
    "tags": ["security", "machine-learning"],
}
"""The SARIF rule of a bundle's findings (``scan``)."""


def members(head: str) -> list[str]:
    """``head`` and every family it is built on (transitively), in registry order."""
    need, todo = set(), [head]
    while todo:
        name = todo.pop()
        if name not in need:
            need.add(name)
            todo += list(families.get(name).requires)
    return [n for n in families.names() if n in need]


def head_of(names: Sequence[str]) -> str:
    """The one family among ``names`` that none of the others is built on."""
    required = {r for n in names for r in families.get(n).requires}
    heads = [n for n in names if n not in required]
    if len(heads) != 1:
        raise UserError(f"bundle: models {', '.join(names)} have {len(heads)} heads ({', '.join(heads) or 'none'}); "
                        "give one model and every model it is built on")
    return heads[0]


def write_bundle(out_dir: str | os.PathLike, model_dirs: Mapping[str, str | os.PathLike], *,
                 data_dir: str | os.PathLike | None = None, lineage: Mapping[str, Any] | None = None) -> dict:
    """Copy the models (family name -> model directory) into a bundle at ``out_dir``; returns the manifest.

    The models must be one head and everything it is built on, of one seed and one dataset. ``data_dir``
    (the ingested data they were trained on) gives the training split's code keys (``train_index.txt``);
    ``lineage`` is recorded in the card (e.g. KFP artifact URIs).
    """
    head = head_of(list(model_dirs))
    names = members(head)
    if set(model_dirs) != set(names):
        raise UserError(f"bundle: {head} needs the models of {', '.join(names)}; got {', '.join(model_dirs)}")
    cards = {n: read_card(model_dirs[n]) for n in names}
    for key in ("data_fingerprint", "seed"):
        values = {n: c.get(key) for n, c in cards.items()}
        if len(set(map(str, values.values()))) > 1:
            raise UserError(f"bundle: the models' {key} differ ({values}); a bundle is one training run's seed")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    for n in names:
        if (out / n).exists():
            shutil.rmtree(out / n)
        shutil.copytree(model_dirs[n], out / n)
    train_keys = 0
    if data_dir is not None:
        from streamguard.data.hygiene import code_key
        from streamguard.data.samples import read_split

        keys = sorted({code_key(s.func) for s in read_split(data_dir, "train")})
        write_bytes_atomic(out / TRAIN_INDEX, "".join(k + "\n" for k in keys).encode())
        train_keys = len(keys)
    predictors = _predictors(out, names)  # loads every model: a bundle that is written also loads
    graph = _graph_settings(predictors)
    card = cards[head]
    manifest = {
        "format": BUNDLE_FORMAT,
        "head": head,
        "families": names,
        "graph_builder": graph.get("graph_builder"),
        "max_nodes": graph.get("max_nodes"),
        "settings": {n: p.settings for n, p in predictors.items()},
        "thresholds": {n: p.threshold for n, p in predictors.items()},
        "rule": RULE,
        "train_index": {"file": TRAIN_INDEX, "keys": train_keys, "key": "sha1 of hygiene.normalise(func)"}
        if data_dir is not None else None,
        "card": {
            "data_fingerprint": card.get("data_fingerprint"),
            "seed": card.get("seed"),
            "code_version": card.get("code_version"),
            "bundled_by": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": {n: {"valid": c.get("valid_metrics"), "test": c.get("test_metrics")} for n, c in cards.items()},
            "lineage": {"models": {n: str(model_dirs[n]) for n in names},
                        "data": str(data_dir) if data_dir is not None else None, **dict(lineage or {})},
        },
    }
    write_json_atomic(out / MANIFEST, manifest)  # last: marks the bundle complete
    log.info("bundle %s: %s (seed %s, %s threshold %.3f)", out, ", ".join(names), card.get("seed"), head,
             manifest["thresholds"][head])
    return manifest


def _graph_settings(predictors: Mapping[str, Predictor]) -> dict[str, Any]:
    """The graph builder version and node cap the bundle's models featurise with (at most one of each)."""
    out: dict[str, Any] = {}
    for key in ("graph_builder", "max_nodes"):
        values = {p.settings[key] for p in predictors.values() if key in p.settings}
        if len(values) > 1:
            raise UserError(f"bundle: the models disagree on {key} ({sorted(map(str, values))})")
        if values:
            out[key] = values.pop()
    return out


def _predictors(root: Path, names: Sequence[str]) -> dict[str, Predictor]:
    out: dict[str, Predictor] = {}
    for n in names:
        fam = families.get(n)
        out[n] = fam.predictor(root / n, {r: out[r] for r in fam.requires})
    return out


@dataclass
class Bundle:
    """A loaded bundle: its manifest and one :class:`Predictor` per family (registry order)."""

    source: str
    manifest: dict[str, Any]
    predictors: dict[str, Predictor]
    train_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def head(self) -> str:
        return self.manifest["head"]

    @property
    def families(self) -> list[str]:
        return list(self.predictors)

    @property
    def thresholds(self) -> dict[str, float]:
        return {n: p.threshold for n, p in self.predictors.items()}

    @property
    def rule(self) -> dict[str, Any]:
        return self.manifest.get("rule") or RULE

    @property
    def card(self) -> dict[str, Any]:
        return self.manifest.get("card", {})

    def score(self, samples: Sequence[Sample], batch_size: int = DEFAULT_BATCH, progress: bool = True,
              desc: str = "score") -> dict[str, Any]:
        """Vulnerable-class probability of every sample (numpy array, in order) by every family of the bundle.

        Functions are featurised and scored ``batch_size`` at a time, shortest first; a family's items and
        embeddings for a batch are made once and shared (the GNN's graphs and both encoders' embeddings serve
        the fusion too, ``Predictor.probs``). A progress bar counts functions.
        """
        import numpy as np
        from tqdm import tqdm

        samples = list(samples)
        # similar lengths batched together (less padding); the results are put back in input order
        order = sorted(range(len(samples)), key=lambda i: len(samples[i].func))
        out = {n: np.zeros(len(samples)) for n in self.predictors}
        with tqdm(total=len(samples), desc=desc, unit="fn", disable=not progress or None, mininterval=1.0) as bar:
            for idx in chunks(order, batch_size):
                fns = Functions([samples[i] for i in idx])
                for n, p in self.predictors.items():
                    out[n][idx] = p.probs(fns)
                bar.update(len(idx))
        return out


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """The manifest, if this code can load its bundle; else a UserError naming what differs."""
    from streamguard.graphs import BUILDER_VERSION

    if not isinstance(manifest, dict):
        raise UserError(f"{where}: not a bundle manifest (a JSON object)")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{where}: bundle format {manifest.get('format')!r}; this StreamGuard ({__version__}) "
                        f"reads format {BUNDLE_FORMAT} (rebuild the bundle with `streamguard bundle`)")
    if manifest.get("graph_builder") not in (None, BUILDER_VERSION):
        raise UserError(f"{where}: graph_builder {manifest['graph_builder']!r} differs from this code's "
                        f"{BUILDER_VERSION!r}; its GNN would score other graphs than it learned from "
                        "(use the StreamGuard version that trained it, or retrain)")
    for key in ("head", "families", "thresholds"):
        if key not in manifest:
            raise UserError(f"{where}: field {key!r} missing")
    return manifest


def load_bundle(uri: str | os.PathLike, store_settings: Any = None) -> Bundle:
    """Load a bundle from a directory or an object store prefix (``s3://bucket/prefix``); a champion pointer
    (``<store>/models/<name>/champion``, :mod:`streamguard.champion`) loads the champion version."""
    from streamguard.champion import resolve

    uri = resolve(uri, store_settings)
    if "://" in uri and not uri.startswith("file://"):
        from streamguard.storage import open_store

        store = open_store(uri, store_settings)
        with tempfile.TemporaryDirectory(prefix="sg-bundle-") as tmp:
            download_bundle(store, "", tmp)
            return _load_dir(Path(tmp), uri)  # everything is in memory once loaded
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    return _load_dir(path, uri)


def _load_dir(path: Path, source: str) -> Bundle:
    where = path / MANIFEST
    if not where.is_file():
        raise UserError(f"{source}: not a bundle ({MANIFEST} missing; write one with `streamguard bundle`)")
    try:
        manifest = check_manifest(read_json(where), str(where if source == str(path) else source))
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    names = list(manifest["families"])
    unknown = [n for n in names if n not in families.names()]
    if unknown:
        raise UserError(f"{where}: family {unknown[0]!r} unknown to this StreamGuard ({', '.join(families.names())})")
    predictors = _predictors(path, names)
    keys: frozenset[str] = frozenset()
    index = path / TRAIN_INDEX
    if index.is_file():
        keys = frozenset(line.strip() for line in index.read_text().splitlines() if line.strip())
    return Bundle(source, manifest, predictors, keys)


def upload_bundle(local_dir: str | os.PathLike, store, prefix: str = "") -> list[str]:
    """Copy a bundle directory to ``prefix`` of an object store (the manifest last); returns the keys."""
    root = Path(local_dir)
    check_manifest(read_json(root / MANIFEST), str(root / MANIFEST))
    prefix = prefix.strip("/")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(root).as_posix() == MANIFEST)
    keys = []
    for p in files:
        key = "/".join(x for x in (prefix, p.relative_to(root).as_posix()) if x)
        store.put_file(key, p)
        keys.append(key)
    return keys


def download_bundle(store, prefix: str, local_dir: str | os.PathLike) -> Path:
    """Copy the bundle at ``prefix`` of an object store into ``local_dir``; returns ``local_dir``."""
    prefix = prefix.strip("/")
    base = prefix + "/" if prefix else ""
    try:
        keys = store.list(base)
    except StreamGuardError:
        raise
    except Exception as e:
        raise UserError(f"{store.uri}/{prefix}: cannot list the bundle ({type(e).__name__}: {e})") from None
    if f"{base}{MANIFEST}" not in keys:
        raise UserError(f"{store.uri.rstrip('/')}/{base}: not a bundle ({MANIFEST} missing)")
    out = Path(local_dir)
    for k in keys:
        store.get_file(k, out / k[len(base):])
    return out


def best_bundle(paths: Sequence[str | os.PathLike]) -> Path:
    """Of several seeds' bundles, the one whose head has the best validation F1 (ties: the lowest seed)."""
    if not paths:
        raise UserError("best_bundle: no bundles given")

    def key(p) -> tuple[float, float]:
        m = check_manifest(read_json(Path(p) / MANIFEST), str(Path(p) / MANIFEST))
        valid = (m["card"]["metrics"].get(m["head"]) or {}).get("valid") or {}
        return (-float(valid.get("f1") or 0.0), float(m["card"].get("seed") or 0))

    return Path(min(paths, key=key))
