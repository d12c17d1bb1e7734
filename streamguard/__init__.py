"""StreamGuard: train a vulnerable-C-function detector (transformer, GNN, fusion).

All pipeline logic lives in this package; ``components/`` only wraps it for KFP.
This package never imports ``kfp``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("streamguard")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.1.0"
