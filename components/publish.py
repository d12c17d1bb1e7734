from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish(bundles: Input[List[Model]], data: Input[Dataset], summary: Input[Artifact], external: Input[Artifact],
            profile: str, overrides: dict, store_uri: str, promote: bool, run_id: str, published: Output[Model],
            metrics: Output[Metrics], report: Output[Markdown]):
    """The seed best on validation to models/<name>/<version>/ of the store, behind the champion/challenger gate
    (test split + eval_uris); model card; Model Registry when MODEL_REGISTRY_URL is set."""
    from streamguard.kfp_io import publish_and_log

    publish_and_log([b.path for b in bundles], data=data, summary=summary, external=external, profile=profile,
                    overrides=overrides, store_uri=store_uri, promote=promote, run_id=run_id, published=published,
                    metrics=metrics, report=report)
