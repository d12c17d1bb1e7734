"""The StreamGuard training pipeline (KFP v2).

ingest -> build_graphs -> preflight -> ParallelFor(seed): train_transformer,
train_gnn -> train_fusion -> aggregate (dsl.Collected fan-in).
"""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown

from components.aggregate import aggregate
from components.build_graphs import build_graphs
from components.ingest import ingest
from components.preflight import preflight
from components.train_fusion import train_fusion
from components.train_gnn import train_gnn
from components.train_transformer import train_transformer

PIPELINE_NAME = "streamguard-training"
DEFAULT_SEEDS = [42, 2025, 7]


class Outputs(NamedTuple):
    summary: Artifact
    report: Markdown
    report_html: HTML


@dsl.pipeline(name=PIPELINE_NAME,
              description="Train a vulnerable-C-function detector: transformer, GNN and fusion over several seeds.")
def streamguard_training(
    input_uri: str,
    seeds: list = DEFAULT_SEEDS,
    profile: str = "demo",
    overrides: dict = {},
    store_uri: str = "",
    require_gpu: bool = False,
) -> Outputs:
    """``input_uri``: dataset (path, URL or s3:// URI); ``profile``: config profile; ``overrides``: nested
    config overrides; ``store_uri``: object store for checkpoints, LR cache and graph shards
    (empty: $STREAMGUARD_STORE); ``require_gpu``: pre-flight fails without CUDA."""
    common = dict(profile=profile, overrides=overrides)
    data = ingest(input_uri=input_uri, **common).set_display_name("ingest")
    graphs = build_graphs(data=data.outputs["data"], store_uri=store_uri, **common).set_display_name("build graphs")
    gate = preflight(data=data.outputs["data"], graphs=graphs.outputs["graphs"], store_uri=store_uri,
                     require_gpu=require_gpu, **common).set_display_name("pre-flight")
    run_key = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    with dsl.ParallelFor(seeds, name="seeds") as seed:
        tr = train_transformer(data=data.outputs["data"], seed=seed, store_uri=store_uri, run_key=run_key,
                               **common).after(gate).set_display_name("train transformer")
        gn = train_gnn(data=data.outputs["data"], graphs=graphs.outputs["graphs"], seed=seed, store_uri=store_uri,
                       run_key=run_key, **common).after(gate).set_display_name("train GNN")
        fu = train_fusion(data=data.outputs["data"], graphs=graphs.outputs["graphs"], transformer=tr.outputs["model"],
                          gnn=gn.outputs["model"], seed=seed, store_uri=store_uri, run_key=run_key,
                          **common).set_display_name("train fusion")
    agg = aggregate(transformer_results=dsl.Collected(tr.outputs["result"]),
                    gnn_results=dsl.Collected(gn.outputs["result"]),
                    fusion_results=dsl.Collected(fu.outputs["result"])).set_display_name("aggregate")
    return Outputs(summary=agg.outputs["summary"], report=agg.outputs["report"], report_html=agg.outputs["report_html"])
