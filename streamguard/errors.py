"""Error types and the process exit codes they map to (documented in README)."""

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_COLLAPSE = 3
EXIT_PREFLIGHT = 4
EXIT_STORE_UNAVAILABLE = 5


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
