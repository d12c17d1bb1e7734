from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def preflight(data: Input[Dataset], graphs: Input[Dataset], profile: str, overrides: dict, store_uri: str,
              require_gpu: bool, report: Output[Markdown], report_json: Output[Artifact]):
    """Gate: fails (and so stops the pipeline before training) when a required check fails."""
    from streamguard.config import load_config
    from streamguard.preflight import PreflightOptions
    from streamguard.preflight import preflight as run
    from streamguard.stage import run_stage
    from streamguard.storage import open_store

    run_stage(lambda: run(data.path, graphs.path, load_config(profile, overrides), report_json.path, report.path,
                          store=open_store(store_uri or None), options=PreflightOptions(require_gpu=require_gpu)))
