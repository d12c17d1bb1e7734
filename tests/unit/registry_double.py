"""An HTTP double of Kubeflow Model Registry's REST API (v1alpha3), the paths and payloads of
``api/openapi/model-registry.yaml`` in kubeflow/model-registry: what the ``model-registry`` client calls to
register a model. It keeps what was created and records every request (method, path, query, JSON body)."""

from __future__ import annotations

import threading

from tests.http_double import HTTPRequest, JSONServer

PREFIX = "/api/model_registry/v1alpha3"


class RegistryDouble:
    def __init__(self):
        self.requests: list[dict] = []
        self.objects: dict[str, dict[str, dict]] = {"registered_models": {}, "model_versions": {}, "artifacts": {}}
        self._next = 0
        self._lock = threading.Lock()
        self.server = JSONServer(self._handle)
        self.url = self.server.url

    def _handle(self, req: HTTPRequest) -> tuple[int, dict]:
        q, body = req.first(), req.json()
        with self._lock:
            self.requests.append({"method": req.method, "path": req.path, "query": q, "body": body,
                                  "auth": req.header("Authorization")})
            return self.route(req.method, req.path, q, body)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

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
