"""One check's result, and running a check so that a crash is a failed check with a one-line message."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("streamguard.preflight")


@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skip
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    seconds: float = 0.0

    @property
    def blocking(self) -> bool:
        """A required check that failed: the run must stop."""
        return self.status == "fail" and self.required


def one_line(e: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_check(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """``fn()``, timed; an exception becomes a failed ``name`` (one-line message, the traceback in its values)."""
    t = time.time()
    try:
        r = fn()
    except Exception as e:
        log.debug("check %s crashed", name, exc_info=True)
        r = CheckResult(name, "fail", f"check crashed: {one_line(e)}", {"traceback": traceback.format_exc(limit=4)})
    r.seconds = round(time.time() - t, 3)
    return r
