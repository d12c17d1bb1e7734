"""The GNN family: GINE message passing over the program graphs (:mod:`streamguard.models.gnn`).

Items are the PyG graphs of ``build-graphs``, one per sample, in split order
(:func:`graph_splits`; a sample without a graph is an error). Saved as
``model.pt`` (state dict) + ``config.json`` (the ``gnn`` config and the graph
builder version).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError
from streamguard.families.base import GRAPHS, Datasets, RunContext, chunks
from streamguard.jsonio import read_json, write_json_atomic


def graph_splits(graphs_dir: str, data_dir: str) -> dict[str, list]:
    """Each split's graphs in the order of the split's samples."""
    from streamguard.graphs import load_graphs

    out = {}
    for s in SPLITS:
        graphs = {g.sample_id: g for g in load_graphs(graphs_dir, s)}
        ids = [x.id for x in read_split(data_dir, s)]
        missing = [i for i in ids if i not in graphs]
        if missing:
            raise UserError(f"{graphs_dir}: split {s} has no graph for sample id {missing[0]!r} "
                            f"({len(missing)} missing; rebuild with `streamguard build-graphs`)")
        out[s] = [graphs[i] for i in ids]
    return out


def new_model(cfg, seed: int):
    """A fresh GNN classifier for ``seed``."""
    import torch

    from streamguard.models.gnn import GNNClassifier

    torch.manual_seed(seed)
    return GNNClassifier(cfg.gnn)


class ProbeParts(NamedTuple):
    model: Any
    graphs: list
    """The train split's graphs, in train-split order."""


def probe_parts(ctx) -> ProbeParts:
    """A fresh GNN and the train graphs; built once per ProbeContext."""
    def build() -> ProbeParts:
        if not ctx.graphs_dir:
            raise UserError("graphs directory: not given (the GNN probes need the output of build-graphs)")
        graphs = graph_splits(ctx.graphs_dir, ctx.data_dir)["train"]
        return ProbeParts(new_model(ctx.cfg, ctx.seed), graphs)

    return ctx.cached("gnn", build)


class GNNFamily:
    name = "gnn"
    inputs = (GRAPHS,)
    requires: tuple[str, ...] = ()
    memory_probe = True
    initial_candidate = False

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

    def smoke_batches(self, ctx, indices: list[int], batch_size: int):
        from streamguard.models.gnn import gnn_collate

        model, graphs = probe_parts(ctx)
        return model, [gnn_collate([graphs[i] for i in c]) for c in chunks(indices, batch_size)]

    def memory_batch(self, ctx, batch_size: int):
        from streamguard.models.gnn import gnn_collate

        model, graphs = probe_parts(ctx)
        idx = sorted(range(len(graphs)), key=lambda i: -int(graphs[i].num_nodes))[:batch_size]
        batch = gnn_collate([graphs[i] for i in idx])
        return model, batch, {"nodes": int(batch["graph"].num_nodes), "edges": int(batch["graph"].edge_index.shape[1]),
                              "largest_graph_nodes": int(graphs[idx[0]].num_nodes), "batch_items": len(idx)}


FAMILY = GNNFamily()
