"""An HTTP double of Kubeflow Model Registry's REST API (v1alpha3), the paths and payloads of
``api/openapi/model-registry.yaml`` in kubeflow/model-registry: what the ``model-registry`` client calls to
register a model. It keeps what was created and records every request (method, path, query, JSON body)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/api/model_registry/v1alpha3"


class RegistryDouble:
    def __init__(self):
        self.requests: list[dict] = []
        self.objects: dict[str, dict[str, dict]] = {"registered_models": {}, "model_versions": {}, "artifacts": {}}
        self._next = 0
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                u = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                with double._lock:
                    double.requests.append({"method": method, "path": u.path, "query": q, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    status, out = double.route(method, u.path, q, body)
                self._reply(status, out)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _new(self, kind: str, body: dict, **extra) -> dict:
        self._next += 1
        obj = {**body, **extra, "id": str(self._next), "createTimeSinceEpoch": "1", "lastUpdateTimeSinceEpoch": "1"}
        obj.setdefault("state", "LIVE")
        self.objects[kind][obj["id"]] = obj
        return obj

    def _find(self, kind: str, name: str, parent: str | None, parent_key: str) -> dict | None:
        for o in self.objects[kind].values():
            if o.get("name") == name and (parent is None or o.get(parent_key) == parent):
                return o
        return None

    def route(self, method: str, path: str, q: dict, body: dict | None) -> tuple[int, dict]:
        if not path.startswith(PREFIX):
            return 404, {"code": "404", "message": f"no route {path}"}
        p = path[len(PREFIX):].strip("/").split("/")
        not_found = (404, {"code": "404", "message": "not found"})
        if method == "GET" and p == ["registered_model"]:
            o = self._find("registered_models", q.get("name"), None, "")
            return (200, o) if o else not_found
        if method == "POST" and p == ["registered_models"]:
            return 201, self._new("registered_models", body)
        if method == "PATCH" and len(p) == 2 and p[0] == "registered_models":
            o = self.objects["registered_models"].get(p[1])
            if not o:
                return not_found
            o.update(body)
            return 200, o
        if method == "GET" and p == ["model_version"]:
            o = self._find("model_versions", q.get("name"), q.get("parentResourceId"), "registeredModelId")
            return (200, o) if o else not_found
        if method == "POST" and p == ["model_versions"]:
            return 201, self._new("model_versions", body)
        if method == "GET" and p == ["model_artifact"]:
            o = self._find("artifacts", q.get("name"), q.get("parentResourceId"), "modelVersionId")
            return (200, o) if o else not_found
        if method == "POST" and len(p) == 3 and p[0] == "model_versions" and p[2] == "artifacts":
            if p[1] not in self.objects["model_versions"]:
                return not_found
            return 201, self._new("artifacts", body, modelVersionId=p[1])
        return 405, {"code": "405", "message": f"{method} {path} not in the double"}

    def sent(self, method: str, tail: str) -> list[dict]:
        """The JSON bodies of requests ``method PREFIX/tail`` (``tail`` may end in ``*``)."""
        def match(path: str) -> bool:
            rest = path[len(PREFIX) + 1:]
            return rest.startswith(tail[:-1]) if tail.endswith("*") else rest == tail
        return [r["body"] for r in self.requests if r["method"] == method and match(r["path"])]
