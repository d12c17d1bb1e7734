"""The one retry policy of every object-store operation, on both backends.

Each store method runs its operation through :meth:`RetryPolicy.run` with the backend's
classifier, which sorts an exception into one of three kinds:

* **transient** — connection refused/reset, timeouts, an interrupted response, HTTP 500,
  502, 503, 504 (and 429), the S3 codes ``SlowDown``, ``RequestTimeout``,
  ``InternalError``, ``ServiceUnavailable``; on a local or network filesystem ``ETIMEDOUT``,
  ``EIO``, ``ESTALE`` and the network errnos. Retried with exponential backoff and jitter
  (a warning per retry naming the operation, key and error) until the next sleep would
  pass ``budget_s`` counted from the first attempt; then :class:`StoreUnavailableError`
  (one line, exit 5). Nothing is lost: the next attempt resumes from the last checkpoint.
* **permanent** — ``AccessDenied``, ``NoSuchBucket``, ``InvalidAccessKeyId``,
  ``SignatureDoesNotMatch`` and any other S3 error answered with a 4xx status; ``EACCES``,
  ``EPERM``, ``EROFS``, ``ENOSPC`` locally. Fails at once with :class:`StoreAccessError`
  (one line naming endpoint, bucket, key and the S3 error code; exit 2).
* anything else (``ObjectNotFound``, a bad key, a bug) is not the store's weather and is
  raised unchanged.

The loop is written here rather than taken from a library (tenacity, urllib3's ``Retry``)
because the classification is S3-specific (``RequestTimeout`` is a 400, ``AccessDenied`` must
not be retried), the budget is wall-clock, and the clock, sleep and jitter source are injected
so tests run in milliseconds. The jitter uses a private ``random.Random``: a retry never moves
the global RNG streams a resumed training run depends on.
"""

from __future__ import annotations

import errno
import http.client
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from streamguard.errors import StoreUnavailableError, UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = "transient"
PERMANENT = "permanent"

TRANSIENT_S3_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                                "OperationAborted", "XMinioServerNotInitialized"})
"""S3 error codes retried whatever their HTTP status (``RequestTimeout`` comes as a 400)."""
PERMANENT_S3_CODES = frozenset({"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                "AllAccessDisabled", "AccountProblem", "InvalidBucketName", "InvalidToken",
                                "ExpiredToken"})
"""Documented permanent codes; any other S3 error with a 4xx status is permanent too."""
TRANSIENT_HTTP_STATUS = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRNOS = frozenset({errno.ETIMEDOUT, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.ECONNRESET,
                              errno.ECONNREFUSED, errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH,
                              errno.ENETRESET, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.EPIPE})
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})

Fault = tuple[str, str]
"""(kind, code): ``("transient", "ConnectionRefusedError")``, ``("permanent", "AccessDenied")``."""


class StoreAccessError(UserError):
    """A permanent object-store error (denied, no such bucket, bad credentials): exit 2, no retry."""


def _errno_name(n: int | None) -> str:
    return errno.errorcode.get(n, str(n)) if n is not None else "?"


def classify_os(exc: BaseException) -> Fault | None:
    """Local / network-filesystem errors: transient or permanent by errno; others unclassified."""
    if isinstance(exc, FileNotFoundError) or not isinstance(exc, OSError):
        return None
    if exc.errno in TRANSIENT_ERRNOS:
        return TRANSIENT, _errno_name(exc.errno)
    if exc.errno in PERMANENT_ERRNOS:
        return PERMANENT, _errno_name(exc.errno)
    return None


def classify_s3(exc: BaseException) -> Fault | None:
    """minio / urllib3 / socket errors of an S3 request; None for anything that is not the store's answer."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3 import exceptions as u3

    if isinstance(exc, S3Error):
        status = getattr(getattr(exc, "response", None), "status", None)
        code = exc.code or f"HTTP {status}"
        if exc.code in TRANSIENT_S3_CODES or status in TRANSIENT_HTTP_STATUS:
            return TRANSIENT, code
        return PERMANENT, code
    if isinstance(exc, ServerError):  # no XML body, e.g. a 503 to a HEAD request
        return (TRANSIENT if exc.status_code in TRANSIENT_HTTP_STATUS or exc.status_code >= 500 else PERMANENT,
                f"HTTP {exc.status_code}")
    if isinstance(exc, InvalidResponseError):  # a non-S3 answer: a proxy's or load balancer's error page
        status = getattr(exc, "_code", None)
        transient = isinstance(status, int) and (status in TRANSIENT_HTTP_STATUS or status >= 500)
        return TRANSIENT if transient else PERMANENT, f"HTTP {status} (not an S3 response)"
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        return classify_s3(exc.reason)
    if isinstance(exc, u3.SSLError) or isinstance(exc, ssl.SSLError):
        cause = exc.__context__ or exc.__cause__
        if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(cause, ssl.SSLCertVerificationError) \
                or "CERTIFICATE_VERIFY_FAILED" in str(exc) or "WRONG_VERSION_NUMBER" in str(exc):
            return PERMANENT, "SSLError"  # a wrong certificate or MINIO_SECURE does not heal by waiting
        return TRANSIENT, "SSLError"
    if isinstance(exc, (u3.TimeoutError, u3.ProtocolError, u3.ProxyError, u3.IncompleteRead, u3.ResponseError,
                        http.client.IncompleteRead, http.client.BadStatusLine, ConnectionError, TimeoutError,
                        socket.timeout)):
        return TRANSIENT, type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS - {errno.EIO, errno.ESTALE}:
        return TRANSIENT, _errno_name(exc.errno)  # network errnos; a local file's errors are not the store's
    return None


def _one_line(code: str, exc: BaseException) -> str:
    """``code: detail`` on one line (the S3 message, or the exception's text)."""
    from minio.error import S3Error

    detail = exc.message if isinstance(exc, S3Error) else None
    text = " ".join(str(detail if detail is not None else exc).split())
    if "[Errno" in text:  # urllib3 repeats host and port before the socket error: keep the error
        text = text[text.index("[Errno"):]
    text = text[:240]
    return f"{code}: {text}" if text and text != code else code


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter inside a wall-clock budget.

    Sleep before retry ``n`` (1, 2, ...) is ``min(max_sleep_s, initial_s * 2**(n-1))`` scaled by a uniform
    factor in [0.5, 1]. The operation gives up when the next sleep would end past ``budget_s`` after the
    first attempt (so the total stays under the budget plus one request timeout).
    """

    budget_s: float = 180.0
    initial_s: float = 0.5
    max_sleep_s: float = 20.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings) -> "RetryPolicy":
        """From a ``StoreConfig`` (``retry_budget_s``); None: the defaults."""
        if settings is None:
            return cls()
        budget = float(settings.retry_budget_s)
        return cls(budget_s=budget, max_sleep_s=max(0.05, min(cls.max_sleep_s, budget / 4)))

    def delay(self, attempt: int) -> float:
        return min(self.max_sleep_s, self.initial_s * 2 ** (attempt - 1)) * self.rng.uniform(0.5, 1.0)

    def run(self, op: str, where: str, fn: Callable[[], T], classify: Callable[[BaseException], Fault | None],
            what: str = "object store") -> T:
        """``fn()`` with retries. ``where`` names the place in messages (endpoint, bucket and key); ``what`` the
        service (the same policy serves Kubeflow Model Registry, ``streamguard.registry``)."""
        start = self.clock()
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as e:
                fault = classify(e)
                if fault is None:
                    raise
                kind, code = fault
                if kind == PERMANENT:
                    raise StoreAccessError(f"{what} {where}: {op} refused: {_one_line(code, e)} "
                                           "(permanent; not retried)") from None
                attempt += 1
                elapsed = self.clock() - start
                pause = self.delay(attempt)
                if elapsed + pause > self.budget_s:
                    raise StoreUnavailableError(
                        f"{what} unavailable: {where}: {op} failed {attempt} times in {elapsed:.1f} s "
                        f"(store.retry_budget_s={self.budget_s:g}); last error {_one_line(code, e)}") from None
                log.warning("%s %s: %s failed (%s); retry %d in %.1f s (%.1f of %g s budget used)",
                            what, where, op, _one_line(code, e), attempt, pause, elapsed, self.budget_s)
                self.sleep(pause)
