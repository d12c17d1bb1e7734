"""Object-store faults for tests: a TCP proxy that can go down, and an S3 double that denies everything.

``FlakyProxy`` forwards 127.0.0.1:<port> to an upstream (the moto server) with one thread per
direction and connection. ``outage(seconds)`` (or ``arm(...)``, which starts one when a matching
request passes) resets every open connection and refuses new ones (the listening socket is
closed, so a connect gets ECONNREFUSED) until the outage ends; the upstream keeps its state, as
a MinIO behind a flapping network does. ``DenyingS3`` answers every request with S3's
``AccessDenied`` XML error, which moto (it accepts any credentials) never does.
"""

from __future__ import annotations

import http.server
import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FlakyProxy:
    def __init__(self, upstream: str):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._down_until = 0.0
        self._trigger: tuple[bytes, bytes, int, float] | None = None
        self._seen = 0
        self.outages: list[tuple[float, float]] = []
        """(start, end) of every outage, by time.monotonic()."""
        self.refused = 0
        self._stop = threading.Event()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- control
    def outage(self, seconds: float) -> None:
        """Go down now for ``seconds``: reset every open connection, refuse new ones."""
        with self._lock:
            now = time.monotonic()
            self._down_until = max(self._down_until, now + seconds)
            self.outages.append((now, self._down_until))
            conns, self._conns = list(self._conns), set()
        for c in conns:
            _reset(c)

    def arm(self, method: bytes, path_part: bytes, nth: int, seconds: float) -> None:
        """Start an outage of ``seconds`` when the ``nth`` request ``method`` whose line holds ``path_part``
        arrives (that request is cut off, not forwarded)."""
        with self._lock:
            self._trigger, self._seen = (method, path_part, nth, seconds), 0

    def end_outage(self) -> None:
        with self._lock:
            self._down_until = 0.0

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def close(self) -> None:
        self._stop.set()
        self.end_outage()
        self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            _reset(c)

    # ---------------------------------------------------------------- plumbing
    def _listen(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        s.settimeout(0.02)
        return s

    def _accept_loop(self) -> None:
        listener: socket.socket | None = self._listener
        while not self._stop.is_set():
            if self.down:
                if listener is not None:  # closed listening socket: connects are refused
                    listener.close()
                    self.refused += 1
                    listener = None
                time.sleep(0.02)
                continue
            if listener is None:
                listener = self._listen(self.port)
            try:
                client, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                continue
            if self.down:  # accepted in the instant the outage began
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            with self._lock:
                self._conns.update((client, server))
            done = [0]
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, up, done), daemon=True).start()
        if listener is not None:
            listener.close()

    def _check_trigger(self, chunk: bytes) -> bool:
        with self._lock:
            if self._trigger is None:
                return False
            method, part, nth, seconds = self._trigger
            line = chunk.split(b"\r\n", 1)[0]
            if not (line.startswith(method + b" ") and part in line):
                return False
            self._seen += 1
            if self._seen < nth:
                return False
            self._trigger = None
        self.outage(seconds)
        return True

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool, done: list[int]) -> None:
        """Copy src -> dst; on EOF pass the half-close on (FIN, so no byte sent is lost); the second
        direction to finish closes both. An outage resets both sockets, which ends both directions."""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    dst.shutdown(socket.SHUT_WR)
                    break
                if upstream and self._check_trigger(chunk):
                    return
                dst.sendall(chunk)
        except OSError:  # one side died: end the other direction too
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self._lock:
            done[0] += 1
            last = done[0] == 2
            if last:
                self._conns.discard(src)
                self._conns.discard(dst)
        if last:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass


class DenyingS3:
    """An HTTP server on 127.0.0.1 answering every request ``403 AccessDenied`` (S3's XML error)."""

    def __init__(self):
        double = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _deny(self):
                double.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                        b"<Message>Access Denied</Message><Resource>" + self.path.encode() +
                        b"</Resource><RequestId>deny-1</RequestId><HostId>double</HostId></Error>")
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _deny

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
