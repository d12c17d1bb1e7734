from kfp import dsl

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def source_version(input_uri: str, data_version: str) -> str:
    """The dataset's version for ingest's cache key: ``data_version`` when given, else the data's ETag (s3://,
    http) or size and mtime (path), read now. Never cached, so a changed object at the same URI (a nightly
    schedule) changes ingest's inputs and is ingested again."""
    from streamguard.data.version import data_version as read_version
    from streamguard.stage import run_stage

    return data_version or run_stage(lambda: read_version(input_uri))
