"""Program graphs of C functions (AST + tokens + control flow + data flow) and their shards.

See :mod:`streamguard.graphs.builder` for the node features and edge types (it builds a graph
with :mod:`~streamguard.graphs.features`, :mod:`~streamguard.graphs.nodes`, :mod:`~streamguard.graphs.cfg`,
:mod:`~streamguard.graphs.dataflow` and :mod:`~streamguard.graphs.assemble`),
:mod:`streamguard.graphs.shards` for the shard format and dataset, and
:mod:`streamguard.graphs.stage` for the pipeline stage.
"""

from streamguard.graphs.builder import (
    BUILDER_VERSION,
    DEFAULT_MAX_NODES,
    EDGE_TYPES,
    FEATURE_SPEC,
    NUM_EDGE_TYPES,
    GraphBuildError,
    build_graph,
)

_LAZY = {
    "GraphShardDataset": "streamguard.graphs.shards",
    "load_graphs": "streamguard.graphs.shards",
    "build_graphs": "streamguard.graphs.stage",
}


def __getattr__(name: str):  # heavy parts (torch) load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BUILDER_VERSION", "DEFAULT_MAX_NODES", "EDGE_TYPES", "FEATURE_SPEC", "NUM_EDGE_TYPES", "GraphBuildError",
           "build_graph", "build_graphs", "load_graphs", "GraphShardDataset"]
