from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components._image import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train_fusion(data: Input[Dataset], graphs: Input[Dataset], transformer: Input[Model], gnn: Input[Model],
                 seed: int, profile: str, overrides: dict, store_uri: str, run_key: str, model: Output[Model],
                 result: Output[Artifact], metrics: Output[Metrics], cls_metrics: Output[ClassificationMetrics],
                 bundle: Output[Model]):
    """Train the fusion head over this seed's transformer and GNN (resumes from its checkpoint on retry); write
    this seed's bundle (fusion + transformer + GNN + manifest) for predict, evaluate and scan."""
    from streamguard.kfp_io import train_and_log

    train_and_log("fusion", data=data, graphs=graphs, transformer=transformer, gnn=gnn, seed=seed, profile=profile,
                  overrides=overrides, store_uri=store_uri, run_key=run_key, model=model, result=result,
                  metrics=metrics, cls_metrics=cls_metrics, bundle=bundle)
