from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def aggregate(transformer_results: Input[List[Artifact]], gnn_results: Input[List[Artifact]],
              fusion_results: Input[List[Artifact]], external: Input[Artifact], summary: Output[Artifact],
              metrics: Output[Metrics], report: Output[Markdown], report_html: Output[HTML]):
    """Mean ± std over seeds from every model's predictions (and of the external evaluations):
    production_summary.json, UI metrics, reports."""
    import shutil
    from pathlib import Path

    from streamguard.aggregate import aggregate as run
    from streamguard.aggregate import external_kfp_metrics, kfp_metrics
    from streamguard.kfp_io import log_scalars
    from streamguard.stage import run_stage

    dirs = [a.path for a in [*transformer_results, *gnn_results, *fusion_results]]
    result = run_stage(lambda: run(dirs, summary.path, external_dir=external.path))
    log_scalars(metrics, {**kfp_metrics(result), **external_kfp_metrics(result)})
    shutil.copyfile(Path(summary.path) / "report.md", report.path)
    shutil.copyfile(Path(summary.path) / "report.html", report_html.path)
