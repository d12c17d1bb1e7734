from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(bundles: Input[List[Model]], eval_uris: List[str], profile: str, overrides: dict,
             evaluation: Output[Artifact]):
    """Every seed's bundle on each dataset of ``eval_uris`` (``name=uri`` or a URI): ingested with the training
    hygiene, functions seen in training removed, every metric; ``external.json`` indexes them for aggregate."""
    from streamguard.config import load_config
    from streamguard.evaluate import evaluate_external
    from streamguard.stage import run_stage

    index = run_stage(lambda: evaluate_external([b.path for b in bundles], eval_uris, evaluation.path,
                                                load_config(profile, overrides), progress=False))
    evaluation.metadata.update({"datasets": ",".join(index["datasets"]), "bundles": len(bundles)})
