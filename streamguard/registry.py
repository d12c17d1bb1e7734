"""Kubeflow Model Registry: register a published version (``streamguard publish``, ``streamguard register``).

The address is cluster configuration, never a profile field nor compiled into the pipeline YAML:
``MODEL_REGISTRY_URL`` (from the ``streamguard-config`` ConfigMap), e.g.
``http://model-registry-service.kubeflow.svc.cluster.local:8080``. Unset: nothing is registered. A bearer token
is read from ``MODEL_REGISTRY_TOKEN_PATH`` (default: the pod's service-account token, when there is one);
``MODEL_REGISTRY_CA`` names a CA bundle for an ``https://`` address.

One registration is three idempotent get-or-create steps through the ``model-registry`` client's REST API
(``model_registry.core.ModelRegistryAPIClient``; the REST API is Model Registry's ``v1alpha3``):

* ``RegisteredModel`` ``<publish.model_name>`` (owner, description);
* ``ModelVersion`` ``<version>`` under it, with the card's metrics, the gate decision and the lineage as
  custom properties (metadata);
* ``ModelArtifact`` with the ``s3://`` URI of the bundle, format ``streamguard-bundle`` version
  ``bundle.BUNDLE_FORMAT``.

When the version is promoted, the RegisteredModel's ``champion`` / ``champion_uri`` properties are set to it.

A retry of the whole registration finds what an earlier attempt created and completes it. Every request goes
through the object store's retry policy (``storage/retry.py``): connection errors, timeouts, 429 and 5xx are
retried within ``store.retry_budget_s``, other 4xx fail at once; then one line (:class:`RegistryError`). The
client's own retries stay off (its default), so the one policy decides.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from streamguard.errors import RegistryError, StoreUnavailableError
from streamguard.storage.retry import PERMANENT, TRANSIENT, TRANSIENT_HTTP_STATUS, Fault, RetryPolicy, StoreAccessError

log = logging.getLogger(__name__)

URL_ENV = "MODEL_REGISTRY_URL"
TOKEN_ENV = "MODEL_REGISTRY_TOKEN_PATH"
CA_ENV = "MODEL_REGISTRY_CA"
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
FORMAT = "streamguard-bundle"
AUTHOR = "streamguard"


def registry_url() -> str | None:
    """The configured Model Registry address, or None."""
    return (os.environ.get(URL_ENV) or "").strip() or None


def classify(exc: BaseException) -> Fault | None:
    """Model Registry client errors: connection failures, timeouts, 429 and 5xx are transient; other HTTP
    answers permanent; anything else is not the registry's answer (raised unchanged)."""
    import aiohttp
    from mr_openapi.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = exc.status or 0
        kind = TRANSIENT if status in TRANSIENT_HTTP_STATUS or status >= 500 else PERMANENT
        body = " ".join(str(exc.body or exc.reason or "").split())[:200]
        return kind, f"HTTP {status}" + (f" {body}" if body else "")
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError,
                        TimeoutError, ConnectionError)):
        return TRANSIENT, type(exc).__name__
    return None


def _token() -> str | None:
    path = os.environ.get(TOKEN_ENV) or SA_TOKEN
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        if os.environ.get(TOKEN_ENV):
            raise RegistryError(f"environment {TOKEN_ENV}={path}: cannot read the token") from None
        return None


def _client(url: str):
    from urllib.parse import urlparse

    from model_registry.core import ModelRegistryAPIClient

    u = urlparse(url if "://" in url else f"http://{url}")
    if u.scheme not in ("http", "https") or not u.hostname:
        raise RegistryError(f"environment {URL_ENV}={url!r}: expected http(s)://host[:port]")
    port = u.port or (443 if u.scheme == "https" else 80)
    base = f"{u.scheme}://{u.hostname}"
    if u.scheme == "https":
        token = _token()
        if not token:
            raise RegistryError(f"environment {URL_ENV}={url!r}: https needs a token ({TOKEN_ENV} or {SA_TOKEN})")
        return ModelRegistryAPIClient.secure_connection(base, port, user_token=token,
                                                        custom_ca=os.environ.get(CA_ENV) or None)
    return ModelRegistryAPIClient.insecure_connection(base, port, _token())


def metadata(card: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The card's numbers and lineage as Model Registry custom properties (flat scalars; NaN left out)."""
    import math

    out: dict[str, bool | int | float | str] = {}

    def put(key: str, v: Any) -> None:
        if isinstance(v, bool) or isinstance(v, str):
            out[key] = v
        elif isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            out[key] = float(v)

    test = card.get("test") or {}
    for k, v in (test.get("metrics") or {}).items():
        put(f"test_{k}", v)
    for k, ci in (test.get("intervals") or {}).items():
        put(f"test_{k}_low", ci.get("low"))
        put(f"test_{k}_high", ci.get("high"))
    for k, v in (card.get("valid") or {}).items():
        put(f"valid_{k}", v)
    gate = card.get("gate") or {}
    put("gate_decision", gate.get("decision"))
    put("gate_metric", gate.get("metric"))
    put("gate_challenger_score", gate.get("challenger_score"))
    put("gate_champion_score", gate.get("champion_score"))
    put("gate_champion_version", gate.get("champion_version") or "")
    put("promoted", bool(gate.get("promoted")))
    for name, e in (card.get("external") or {}).items():
        for k in ("f1", "roc_auc", "pr_auc", "vd_s", "pair_correct"):
            put(f"external_{name}_{k}", (e or {}).get(k))
    for k, v in (card.get("lineage") or {}).items():
        put(k, v if isinstance(v, (bool, int, float, str)) else str(v))
    put("seed", card.get("seed"))
    return out


def register(url: str, *, name: str, version: str, uri: str, card: Mapping[str, Any], promoted: bool,
             retry: RetryPolicy, timeout_s: float = 30.0, description: str = "") -> dict[str, Any]:
    """Register ``version`` of ``name`` (bundle at ``uri``); returns the ids. Raises :class:`RegistryError`."""
    from model_registry.types import ModelArtifact, ModelVersion, RegisteredModel

    from streamguard.bundle import BUNDLE_FORMAT

    api = _client(url)
    loop = asyncio.new_event_loop()  # one loop of our own: no nest_asyncio patching of the process's asyncio

    def call(op: str, make) -> Any:
        def once() -> Any:
            return loop.run_until_complete(asyncio.wait_for(make(), timeout_s))

        return retry.run(op, f"{url}", once, classify, what="model registry")

    try:
        rm = call("find registered model", lambda: api.get_registered_model_by_params(name))
        if rm is None:
            rm = call("create registered model", lambda: api.upsert_registered_model(RegisteredModel(
                name=name, owner=AUTHOR, description=description or "StreamGuard vulnerable-function detector")))
        mv = call("find model version", lambda: api.get_model_version_by_params(rm.id, version))
        if mv is None:
            about = f"seed {card.get('seed')}: {(card.get('gate') or {}).get('reason', '')}"[:250]
            mv = call("create model version", lambda: api.upsert_model_version(ModelVersion(
                name=version, author=AUTHOR, description=about, custom_properties=metadata(card)), rm.id))
        ma = call("find model artifact", lambda: api.get_model_artifact_by_params(name, mv.id))
        if ma is None:
            ma = call("create model artifact", lambda: api.upsert_model_version_artifact(ModelArtifact(
                name=name, uri=uri, model_format_name=FORMAT, model_format_version=str(BUNDLE_FORMAT),
                description=f"streamguard bundle {version}"), mv.id))
        if promoted:
            props = {**dict(rm.custom_properties or {}), "champion": version, "champion_uri": uri}
            rm = call("mark champion", lambda: api.upsert_registered_model(rm.model_copy(
                update={"custom_properties": props})))
    except (StoreAccessError, StoreUnavailableError) as e:
        raise RegistryError(str(e)) from None
    finally:
        loop.close()
    ids = {"url": url, "registered_model_id": rm.id, "model_version_id": mv.id, "model_artifact_id": ma.id}
    log.info("model registry %s: %s version %s registered (model %s, version %s, artifact %s)", url, name, version,
             rm.id, mv.id, ma.id)
    return ids
