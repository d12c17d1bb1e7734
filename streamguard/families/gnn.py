"""The GNN family: GINE message passing over the program graphs (:mod:`streamguard.models.gnn`).

Items are the PyG graphs of ``build-graphs``, one per sample, in split order
(:func:`graph_splits`; a sample without a graph is an error). Saved as
``model.pt`` (state dict) + ``config.json`` (the ``gnn`` config and the graph
builder version).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError
from streamguard.families.base import GRAPHS, Datasets, RunContext, chunks
from streamguard.jsonio import read_json, write_json_atomic


def split_graphs(graphs_dir: str, split: str, samples: Sequence) -> tuple[list, list[str]]:
    """The graphs of one split's ``samples`` in the samples' order, and the ids of the samples that have none.
    The one reader of graphs by sample: training (:func:`graph_splits`) and pre-flight's data check use it."""
    from streamguard.graphs import load_graphs

    graphs = {g.sample_id: g for g in load_graphs(graphs_dir, split)}
    ids = [x.id for x in samples]
    return [graphs[i] for i in ids if i in graphs], [i for i in ids if i not in graphs]


def graph_splits(graphs_dir: str, data_dir: str) -> dict[str, list]:
    """Each split's graphs in the order of the split's samples; a sample without a graph is a UserError."""
    out = {}
    for s in SPLITS:
        out[s], missing = split_graphs(graphs_dir, s, read_split(data_dir, s))
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


class GNNFamily:
    name = "gnn"
    inputs = (GRAPHS,)
    requires: tuple[str, ...] = ()
    memory_probe = True

    def optim_config(self, cfg):
        return cfg.gnn

    def datasets(self, run: RunContext) -> Datasets:
        from streamguard.graphs import BUILDER_VERSION

        splits = graph_splits(run.inputs["graphs"], run.data_dir)
        return Datasets(train=splits["train"], valid=splits["valid"], test=splits["test"],
                        test_ids=[g.sample_id for g in splits["test"]],
                        test_pair_ids=[s.pair_id for s in read_split(run.data_dir, "test")],
                        metadata={"graph_builder": BUILDER_VERSION})

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

        from streamguard.graphs import BUILDER_VERSION

        torch.save(model.cpu().state_dict(), model_dir / "model.pt")
        write_json_atomic(model_dir / "config.json", {"gnn": dataclasses.asdict(run.cfg.gnn),
                                                      "graph_builder": BUILDER_VERSION})

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
