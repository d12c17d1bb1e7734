from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(input_uri: str, profile: str, overrides: dict, data: Output[Dataset], data_card: Output[Markdown]):
    """Validate the dataset, quarantine bad rows, deduplicate, split train/valid/test."""
    import shutil
    from pathlib import Path

    from streamguard.stage import run_stage
    from streamguard.config import load_config
    from streamguard.data.ingest import ingest as run

    def go():
        cfg = load_config(profile, overrides)
        return run(input_uri, data.path, cfg.data, max_tokens=cfg.transformer.max_length)

    report = run_stage(go)
    data.metadata.update({"fingerprint": report["fingerprint"], **{f"{k}_size": v for k, v in report["counts"].items()}})
    shutil.copyfile(Path(data.path) / "data_card.md", data_card.path)
