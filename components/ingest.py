from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(input_uri: str, profile: str, overrides: dict, data_version: str, data: Output[Dataset],
           data_card: Output[Markdown]):
    """Validate the dataset, quarantine bad rows, deduplicate, split train/valid/test. ``data_version`` (ETag or
    size+mtime of the input) is only recorded: it is there to change KFP's cache key when the data changes."""
    import shutil
    from pathlib import Path

    from streamguard.config import load_config
    from streamguard.data.ingest import ingest as run
    from streamguard.models.windowing import Windowing
    from streamguard.stage import run_stage

    def go():
        cfg = load_config(profile, overrides)
        return run(input_uri, data.path, cfg.data, max_tokens=cfg.transformer.max_length,
                   windowing=Windowing.from_config(cfg.transformer))

    report = run_stage(go)
    data.metadata.update({"fingerprint": report["fingerprint"], "data_version": data_version,
                          **{f"{k}_size": v for k, v in report["counts"].items()}})
    shutil.copyfile(Path(data.path) / "data_card.md", data_card.path)
