"""The image every component runs in, derived from the package version (one tag for all).

CPU stages use ``streamguard-cpu``, GPU stages ``streamguard-cuda``; both are built
from ``images/`` by ``make images`` with this same tag. The registry is a profile
setting, read from ``STREAMGUARD_REGISTRY`` when the components are imported
(``pipelines/compile.py`` sets it from the profile before importing them).
"""

import os
import tomllib
from pathlib import Path


def _version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    from importlib.metadata import version

    return version("streamguard")


VERSION = _version()
REGISTRY = os.environ.get("STREAMGUARD_REGISTRY", "ghcr.io/streamguard").rstrip("/")
CPU_IMAGE = f"{REGISTRY}/streamguard-cpu:{VERSION}"
CUDA_IMAGE = f"{REGISTRY}/streamguard-cuda:{VERSION}"
