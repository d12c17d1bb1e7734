"""Running one stage: logging set-up and the mapping of expected errors to one line and an exit code.

``run_cli`` serves the ``streamguard`` command line (returns the exit code);
``run_stage`` serves the KFP components (exits with the code), so a component
imports this small module, not the CLI. Exit codes are in :mod:`streamguard.errors`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

from streamguard.errors import EXIT_UNEXPECTED, StreamGuardError

log = logging.getLogger("streamguard")


def setup_logging(verbose: bool = False) -> None:
    from streamguard.train.distributed import launched_rank

    rank = launched_rank()  # under torchrun every rank logs: say which
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s " + ("" if rank is None else f"[rank {rank}] ")
                               + "%(name)s: %(message)s")
    for noisy in ("urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers' warnings and progress bars off; by environment, read when transformers is imported (importing
    # it here cost every stage ~1 s, the GNN's and the data stages' included); directly if it is imported already
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def run_cli(fn: Callable[[], Any]) -> int:
    """Run ``fn`` mapping expected errors to one line and their exit code."""
    try:
        fn()
        return 0
    except StreamGuardError as e:
        print(f"streamguard: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("streamguard: interrupted", file=sys.stderr)
        return 130
    except Exception:
        log.exception("unexpected failure")
        return EXIT_UNEXPECTED


def run_stage(fn: Callable[[], Any]) -> Any:
    """For KFP components: run ``fn``; an expected error prints one line and exits with its code."""
    setup_logging(os.environ.get("STREAMGUARD_DEBUG") == "1")
    try:
        return fn()
    except StreamGuardError as e:
        print(f"streamguard: error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
