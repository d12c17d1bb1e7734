from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(input_uri: str, profile: str, overrides: dict, data: Output[Dataset], data_card: Output[Markdown]):
    """Validate the dataset, quarantine bad rows, split train/valid/test."""
    import shutil
    from pathlib import Path

    from streamguard.cli import run_stage
    from streamguard.config import load_config
    from streamguard.data.ingest import ingest as run

    report = run_stage(lambda: run(input_uri, data.path, load_config(profile, overrides).data))
    data.metadata.update({"fingerprint": report["fingerprint"], **{f"{k}_size": v for k, v in report["counts"].items()}})
    card = Path(data.path) / "data_card.md"
    if card.is_file():
        shutil.copyfile(card, data_card.path)
    else:
        Path(data_card.path).write_text(f"# Data report\n\n```\n{report}\n```\n")
