"""The GNN family: GINE message passing over the program graphs (:mod:`streamguard.models.gnn`).

Items are the PyG graphs of ``build-graphs``, one per sample, in split order
(:func:`graph_splits`; a sample without a graph is an error). Saved as
``model.pt`` (state dict) + ``config.json`` (the ``gnn`` config, the graph
builder version and the node cap of the graphs it was trained on).

Featurisation (:func:`graph_items`): the graphs given for the samples (training: the
shards), else built on the fly by the same builder function the ``build_graphs`` stage
runs (:func:`~streamguard.graphs.builder.build_or_fallback`) at the model's node cap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from streamguard.data.samples import SPLITS, Sample, read_split
from streamguard.errors import UserError
from streamguard.families.base import GRAPHS, Datasets, Featurised, Functions, Predictor, RunContext, chunks, read_card
from streamguard.jsonio import read_json, write_json_atomic

NAME = "gnn"


def graph_items(fns: Functions, max_nodes: int) -> list:
    """The graph of each function of ``fns``, in order: the given ones (``fns.given["gnn"]``, e.g. from the
    shards) or built with :func:`~streamguard.graphs.builder.build_or_fallback` at ``max_nodes`` -- a
    function that gives no graph gets the one-node fallback graph marked ``failed``, as in the shards.
    Made once per ``fns`` (the fusion's GNN branch reuses them)."""
    def make() -> list:
        if NAME in fns.given:
            return list(fns.given[NAME])
        from streamguard.graphs.assemble import arrays_to_data
        from streamguard.graphs.builder import build_or_fallback

        out = []
        for s in fns.samples:
            arrays, reason = build_or_fallback(s.func, max_nodes)
            out.append(arrays_to_data(arrays, s.id, s.target, failed=reason is not None))
        return out

    return fns.memo(NAME, make)


def split_graphs(graphs_dir: str, split: str, samples: Sequence) -> tuple[list, list[str]]:
    """The graphs of one split's ``samples`` in the samples' order, and the ids of the samples that have none.
    The one reader of graphs by sample: training (:func:`graph_splits`) and pre-flight's data check use it."""
    from streamguard.graphs import load_graphs

    graphs = {g.sample_id: g for g in load_graphs(graphs_dir, split)}
    ids = [x.id for x in samples]
    return [graphs[i] for i in ids if i in graphs], [i for i in ids if i not in graphs]


def graph_splits(graphs_dir: str, data_dir: str, samples: Mapping[str, list[Sample]] | None = None) -> dict[str, list]:
    """Each split's graphs in the order of the split's samples (``samples``: the splits, if already read -- only
    those splits are read then; None: all of them); a sample without a graph is a UserError."""
    out = {}
    for s in (SPLITS if samples is None else tuple(samples)):
        out[s], missing = split_graphs(graphs_dir, s, samples[s] if samples is not None else read_split(data_dir, s))
        if missing:
            raise UserError(f"{graphs_dir}: split {s} has no graph for sample id {missing[0]!r} "
                            f"({len(missing)} missing; rebuild with `streamguard build-graphs`)")
    return out


def new_model(cfg, seed: int):
    """A fresh GNN classifier for ``seed``."""
    import torch

    from streamguard.models.gnn import GNNClassifier

    torch.manual_seed(seed)
    return GNNClassifier(cfg.gnn)


def view(graphs: list, name: str = "gnn"):
    """The GNN's view of graphs: a key of each graph's ``x``, ``edge_index``, ``edge_type`` (after the node cap)."""
    import torch

    from streamguard.data.views import View, digest

    def key(g) -> str:
        return digest(*(g[k].to(torch.long).contiguous().numpy().tobytes() for k in ("x", "edge_index", "edge_type")))

    return View(name, [key(g) for g in graphs], [bool(getattr(g, "truncated", False)) for g in graphs],
                "gnn.max_nodes", "graph after the node cap (x, edge_index, edge_type)",
                [int(g.num_nodes) for g in graphs])


class ProbeParts(NamedTuple):
    model: Any
    graphs: list
    """The train split's graphs, in train-split order."""
    splits: dict
    """Every split's graphs, in split order."""


def probe_parts(ctx) -> ProbeParts:
    """A fresh GNN and the graphs; built once per ProbeContext."""
    def build() -> ProbeParts:
        if not ctx.graphs_dir:
            raise UserError("graphs directory: not given (the GNN probes need the output of build-graphs)")
        splits = graph_splits(ctx.graphs_dir, ctx.data_dir)
        return ProbeParts(new_model(ctx.cfg, ctx.seed), splits["train"], splits)

    return ctx.cached("gnn", build)


def shard_settings(graphs_dir: str) -> dict[str, Any]:
    """The builder version and node cap of the shards in ``graphs_dir``; shards of another builder are refused."""
    from streamguard.graphs import BUILDER_VERSION
    from streamguard.graphs.shards import MANIFEST, read_manifest

    manifest = read_manifest(graphs_dir)
    version = manifest.get("builder_version")
    if version != BUILDER_VERSION:
        raise UserError(f"{Path(graphs_dir) / MANIFEST}: builder_version {version!r} differs from this code's "
                        f"{BUILDER_VERSION!r}; rebuild with `streamguard build-graphs`")
    return {"graph_builder": version, "graph_max_nodes": int(manifest["max_nodes"])}


class GNNFamily:
    name = NAME
    inputs = (GRAPHS,)
    requires: tuple[str, ...] = ()
    memory_probe = True
    initial_candidate = False

    def optim_config(self, cfg):
        return cfg.gnn

    def datasets(self, run: RunContext) -> Datasets:
        settings = shard_settings(run.inputs["graphs"])
        samples = {s: read_split(run.data_dir, s) for s in SPLITS}
        shards = graph_splits(run.inputs["graphs"], run.data_dir, samples)
        splits = {s: graph_items(Functions(samples[s], given={NAME: shards[s]}), settings["graph_max_nodes"])
                  for s in SPLITS}
        return Datasets(train=splits["train"], valid=splits["valid"], test=splits["test"],
                        test_ids=[g.sample_id for g in splits["test"]],
                        test_pair_ids=[s.pair_id for s in samples["test"]], metadata=settings)

    def build(self, run: RunContext, data: Datasets):
        return new_model(run.cfg, run.seed)

    def collate(self, data: Datasets):
        from streamguard.models.gnn import gnn_collate

        return gnn_collate

    def labels(self, items) -> list[int]:
        return [int(g.y.view(-1)[0]) for g in items]

    def lr_key_parts(self, run: RunContext, model) -> dict[str, Any]:
        from streamguard.graphs import BUILDER_VERSION

        return {"model": "gnn", "model_config": dataclasses.asdict(run.cfg.gnn), "graph_builder": BUILDER_VERSION}

    def save(self, run: RunContext, model, data: Datasets, model_dir: Path) -> None:
        import torch

        torch.save(model.cpu().state_dict(), model_dir / "model.pt")
        write_json_atomic(model_dir / "config.json", {"gnn": dataclasses.asdict(run.cfg.gnn),
                                                      "graph_builder": data.metadata["graph_builder"],
                                                      "graph_max_nodes": data.metadata["graph_max_nodes"]})

    def card_extra(self, run: RunContext) -> dict[str, Any]:
        from streamguard.graphs import BUILDER_VERSION

        return {"graph_builder": BUILDER_VERSION}

    def load(self, model_dir: str | Path):
        import torch

        from streamguard.config import GNNConfig, config_from_dict
        from streamguard.models.gnn import GNNClassifier

        conf = read_json(Path(model_dir) / "config.json")
        gcfg = config_from_dict({"gnn": conf["gnn"]}).gnn if conf.get("gnn") else GNNConfig()
        model = GNNClassifier(gcfg)
        model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
        return model.eval()

    def views(self, ctx, split: str):
        return view(probe_parts(ctx).splits[split])

    def predictor(self, model_dir: str | Path, requires: Mapping[str, Predictor]) -> Predictor:
        from streamguard.graphs import BUILDER_VERSION
        from streamguard.models.gnn import gnn_collate

        path = Path(model_dir) / "config.json"
        card = read_card(model_dir)
        if not path.is_file():
            raise UserError(f"{path}: missing; {model_dir} is not a GNN model directory")
        conf = read_json(path)
        if conf.get("graph_builder") != BUILDER_VERSION:
            raise UserError(f"{path}: graph_builder {conf.get('graph_builder')!r} differs from this code's "
                            f"{BUILDER_VERSION!r}: the GNN would score other graphs than it learned from")
        max_nodes = int(conf.get("graph_max_nodes") or conf["gnn"]["max_nodes"])

        def featurise(fns: Functions) -> Featurised:
            return Featurised(graph_items(fns, max_nodes), gnn_collate)

        return Predictor(self.name, self.load(model_dir), featurise, card,
                         {"graph_builder": BUILDER_VERSION, "max_nodes": max_nodes})

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        from streamguard.models.gnn import gnn_collate

        model, graphs, _ = probe_parts(ctx)
        return model, [gnn_collate([graphs[i] for i in c]) for c in chunks(indices, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        from streamguard.models.gnn import gnn_collate

        model, graphs, _ = probe_parts(ctx)
        idx = sorted(range(len(graphs)), key=lambda i: -int(graphs[i].num_nodes))[:batch_size]
        batch = gnn_collate([graphs[i] for i in idx])
        return model, batch, {"nodes": int(batch["graph"].num_nodes), "edges": int(batch["graph"].edge_index.shape[1]),
                              "largest_graph_nodes": int(graphs[idx[0]].num_nodes), "batch_items": len(idx)}


FAMILY = GNNFamily()
