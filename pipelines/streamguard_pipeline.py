"""The StreamGuard training pipeline (KFP v2).

source_version -> ingest -> build_graphs -> preflight -> ParallelFor(seed): train_transformer,
train_gnn -> train_fusion (and the seed's bundle) -> evaluate (every seed's bundle on each of
``eval_uris``) -> aggregate (dsl.Collected fan-in) -> publish (the seed best on validation, behind the
champion/challenger gate, to the store and Model Registry).
"""


from typing import Callable, List, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Model, PipelineTask
from kfp.dsl.graph_component import GraphComponent

from components.aggregate import aggregate
from components.build_graphs import build_graphs
from components.evaluate import evaluate
from components.ingest import ingest
from components.preflight import preflight
from components.publish import publish
from components.source_version import source_version
from components.train_fusion import train_fusion
from components.train_gnn import train_gnn
from components.train_transformer import train_transformer

PIPELINE_NAME = "streamguard-training"
DEFAULT_SEEDS = [42, 2025, 7]


class Outputs(NamedTuple):
    summary: Artifact
    report: Markdown
    report_html: HTML
    published: Model
    card: Markdown


TaskHook = Callable[[str, PipelineTask], None]
"""``hook(stage, task)``: called once per task while the graph is built; ``stage`` is the component's
name (``source_version``, ``ingest``, ``build_graphs``, ``preflight``, ``train_transformer``, ``train_gnn``,
``train_fusion``, ``evaluate``, ``aggregate``, ``publish``). ``pipelines/platform.py`` uses it to apply a compile
profile's Kubernetes settings."""

CACHEABLE_STAGES = ("ingest", "build_graphs", "aggregate")
TRAINING_STAGES = ("train_transformer", "train_gnn", "train_fusion")


def build_pipeline(hook: TaskHook | None = None, *, cache_training: bool = False,
                   seed_parallelism: int = 0) -> GraphComponent:
    """Build the pipeline. ``hook`` decorates each task (see ``TaskHook``); ``cache_training`` lets KFP reuse
    cached training results (off: every run trains; the pre-flight gate is never cached);
    ``seed_parallelism`` caps how many seeds train at once (0: all)."""

    def setup(stage: str, task: PipelineTask) -> PipelineTask:
        if stage in TRAINING_STAGES:
            task.set_caching_options(cache_training)
        else:
            task.set_caching_options(stage in CACHEABLE_STAGES)
        if hook is not None:
            hook(stage, task)
        return task

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Train a vulnerable-C-function detector: transformer, GNN and fusion over several seeds.")
    def streamguard_training(
        input_uri: str,
        seeds: List[int] = DEFAULT_SEEDS,
        profile: str = "demo",
        # A KFP pipeline signature: the default is written into the spec, never mutated (no None: KFP's
        # parameter defaults are literals and the body runs once, at compile time, on placeholders).
        overrides: dict = {},  # noqa: B006
        store_uri: str = "",
        require_gpu: bool = False,
        data_version: str = "",
        eval_uris: List[str] = [],  # noqa: B006 (a literal default written into the spec, see overrides)
        promote: bool = True,
    ) -> Outputs:
        """``input_uri``: dataset (path, URL or s3:// URI); ``profile``: config profile; ``overrides``: nested
        config overrides; ``store_uri``: object store for checkpoints, LR cache and graph shards
        (empty: $STREAMGUARD_STORE); ``require_gpu``: pre-flight fails without CUDA; ``data_version``: the
        dataset's version (empty: read at run time by ``source_version``, never cached), part of ingest's
        cache key, so that a changed object at the same URI is ingested again; ``eval_uris``: more datasets
        (``name=uri`` or a URI) every seed's bundle is evaluated on (``external.<name>`` in the summary), and the
        champion/challenger gate too; ``promote``: false publishes and evaluates the new version against the
        champion but never promotes it."""
        common = dict(profile=profile, overrides=overrides)
        version = setup("source_version", source_version(input_uri=input_uri, data_version=data_version)
                        .set_display_name("data version"))
        data = setup("ingest", ingest(input_uri=input_uri, data_version=version.output,
                                      **common).set_display_name("ingest"))
        graphs = setup("build_graphs", build_graphs(data=data.outputs["data"], store_uri=store_uri,
                                                    **common).set_display_name("build graphs"))
        gate = setup("preflight", preflight(data=data.outputs["data"], graphs=graphs.outputs["graphs"],
                                            store_uri=store_uri, require_gpu=require_gpu,
                                            **common).set_display_name("pre-flight"))
        run_key = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        # No ParallelFor(name=...): backends before 2.16 lose a renamed loop's outputs (pipelines/spec_check.py).
        with dsl.ParallelFor(seeds, parallelism=seed_parallelism) as seed:
            tr = setup("train_transformer", train_transformer(
                data=data.outputs["data"], seed=seed, store_uri=store_uri, run_key=run_key,
                **common).after(gate).set_display_name("train transformer"))
            gn = setup("train_gnn", train_gnn(
                data=data.outputs["data"], graphs=graphs.outputs["graphs"], seed=seed, store_uri=store_uri,
                run_key=run_key, **common).after(gate).set_display_name("train GNN"))
            fu = setup("train_fusion", train_fusion(
                data=data.outputs["data"], graphs=graphs.outputs["graphs"], transformer=tr.outputs["model"],
                gnn=gn.outputs["model"], seed=seed, store_uri=store_uri, run_key=run_key,
                **common).set_display_name("train fusion"))
        ev = setup("evaluate", evaluate(bundles=dsl.Collected(fu.outputs["bundle"]), eval_uris=eval_uris,
                                        **common).set_display_name("evaluate on eval_uris"))
        agg = setup("aggregate", aggregate(transformer_results=dsl.Collected(tr.outputs["result"]),
                                           gnn_results=dsl.Collected(gn.outputs["result"]),
                                           fusion_results=dsl.Collected(fu.outputs["result"]),
                                           external=ev.outputs["evaluation"]
                                           ).set_display_name("aggregate"))
        pub = setup("publish", publish(bundles=dsl.Collected(fu.outputs["bundle"]), data=data.outputs["data"],
                                       summary=agg.outputs["summary"], external=ev.outputs["evaluation"],
                                       store_uri=store_uri, promote=promote, run_id=run_key,
                                       **common).set_display_name("publish (champion/challenger)"))
        return Outputs(summary=agg.outputs["summary"], report=agg.outputs["report"],
                       report_html=agg.outputs["report_html"], published=pub.outputs["published"],
                       card=pub.outputs["report"])

    return streamguard_training


streamguard_training = build_pipeline()
