"""Error types and the process exit codes they map to (documented in README)."""

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_COLLAPSE = 3
EXIT_PREFLIGHT = 4
EXIT_STORE_UNAVAILABLE = 5
EXIT_DISTRIBUTED = 6
EXIT_REGISTRY = 7


class StreamGuardError(Exception):
    """Base class of expected errors: printed as one line, no traceback."""

    exit_code = EXIT_UNEXPECTED


class UserError(StreamGuardError):
    """Bad input or configuration. The message names the file, field and value."""

    exit_code = EXIT_BAD_INPUT


class CollapseError(StreamGuardError):
    """Training collapsed (see collapse_report.json)."""

    exit_code = EXIT_COLLAPSE


class PreflightError(StreamGuardError):
    """A required pre-flight check failed."""

    exit_code = EXIT_PREFLIGHT


class StoreUnavailableError(StreamGuardError):
    """The object store kept failing with transient errors past ``store.retry_budget_s``. Nothing is lost:
    the next attempt (a KFP retry, a rerun) resumes from the last checkpoint that was written."""

    exit_code = EXIT_STORE_UNAVAILABLE


class DistributedError(StreamGuardError):
    """A distributed training launch failed (``streamguard.launch``): a torchrun worker or a TrainJob node ended
    without a StreamGuard exit code (killed by a signal, out of memory, evicted, never started), or the TrainJob
    failed or vanished. ``exit_code`` may be given: a worker's own StreamGuard code (2-5) is passed on."""

    exit_code = EXIT_DISTRIBUTED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class RegistryError(StreamGuardError):
    """Kubeflow Model Registry was down past the store's retry budget or refused the registration. Raised (exit 7)
    only with ``publish.registry_failure: fail`` and only after the bundle is in the store: the store publish and
    the champion pointer stand; ``streamguard register`` registers the version later."""

    exit_code = EXIT_REGISTRY
