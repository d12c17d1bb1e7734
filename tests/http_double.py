"""The HTTP server under every JSON API double of the tests (Model Registry, the Kubernetes/Trainer API, the
KFP v2beta1 API): a ``ThreadingHTTPServer`` on 127.0.0.1 that parses each request into an :class:`HTTPRequest`
and answers with the JSON that the double's ``handle(request) -> (status, reply)`` returns. A double keeps its
own state and records; this module only speaks HTTP (one place for it, instead of one handler class each)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class HTTPRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    """Every value of each query parameter (``parse_qs``)."""
    headers: dict[str, str]
    raw: bytes
    """The request body as sent."""

    def json(self) -> Any:
        """The body parsed as JSON; None when there is none."""
        return json.loads(self.raw) if self.raw else None

    def header(self, name: str) -> str | None:
        """A request header, by case-insensitive name."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def first(self) -> dict[str, str]:
        """The query with the first value of each parameter."""
        return {k: v[0] for k, v in self.query.items()}


Handle = Callable[[HTTPRequest], "tuple[int, Any]"]


class JSONServer:
    """Serves ``handle`` on ``url`` between :meth:`start` and :meth:`stop` (or as a context manager)."""

    def __init__(self, handle: Handle):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def _handle(self):
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = handle(HTTPRequest(self.command, url.path, parse_qs(url.query),
                                                   {k: v for k, v in self.headers.items()}, raw))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "JSONServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "JSONServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
