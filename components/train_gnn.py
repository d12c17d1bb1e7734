from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components._image import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train_gnn(data: Input[Dataset], graphs: Input[Dataset], seed: int, profile: str, overrides: dict, store_uri: str,
              run_key: str, model: Output[Model], result: Output[Artifact], metrics: Output[Metrics],
              cls_metrics: Output[ClassificationMetrics]):
    """Train the GNN for one seed (resumes from its checkpoint on retry)."""
    from streamguard.kfp_io import train_and_log

    train_and_log("gnn", data=data, graphs=graphs, seed=seed, profile=profile, overrides=overrides,
                  store_uri=store_uri, run_key=run_key, model=model, result=result, metrics=metrics,
                  cls_metrics=cls_metrics)
