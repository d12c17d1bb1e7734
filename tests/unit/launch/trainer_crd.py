"""Validate an object against the vendored Kubeflow Trainer TrainJob CRD (tests/fixtures/trainer/), as the API
server would on create with strict field validation (kubectl's default):

* the version's ``openAPIV3Schema`` with ``jsonschema``, every object schema that lists ``properties`` closed
  (``additionalProperties: false``, unless it preserves unknown fields): an unknown or misspelt field fails,
  as a structural schema's pruning reports it under strict validation;
* ``x-kubernetes-list-type: map`` lists: their map keys unique;
* the CEL rules (``x-kubernetes-validations``) that apply on create: the two on ``metadata.name`` are
  evaluated here; rules on fields the object does not have do not apply; transition rules (``oldSelf``)
  apply only on update. A rule of another shape on a present field is reported, so a newer CRD with a rule
  this helper cannot evaluate fails loudly instead of passing silently.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trainer"
CRD_PATH = FIXTURES / "trainer.kubeflow.org_trainjobs.yaml"
TRAINER_TAG = "v2.3.0"


@lru_cache(maxsize=1)
def crd() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    return doc


def version_schema(version: str = "v1alpha1") -> dict[str, Any]:
    (v,) = [v for v in crd()["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists ``properties`` closed to other fields."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "properties":
            out[k] = {name: closed(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not") or k in ("allOf", "anyOf", "oneOf"):
            out[k] = closed(v)
        else:
            out[k] = v
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


_NAME_REGEX = re.compile(r"^self\.metadata\.name\.matches\('(.+)'\)$")
_NAME_SIZE = re.compile(r"^size\(self\.metadata\.name\) <= (\d+)$")


def _rule_problem(rule: str, value: Any, obj: dict, path: str) -> str | None:
    if "oldSelf" in rule:
        return None  # a transition rule: update only
    if m := _NAME_REGEX.match(rule):
        name = obj.get("metadata", {}).get("name", "")
        return None if re.search(m.group(1), name) else f"metadata.name {name!r} does not match {m.group(1)}"
    if m := _NAME_SIZE.match(rule):
        name = obj.get("metadata", {}).get("name", "")
        return None if len(name) <= int(m.group(1)) else f"metadata.name {name!r} is longer than {m.group(1)}"
    return f"{path or '<root>'}: CEL rule not evaluated by this helper: {rule}"


def _walk(schema: dict, value: Any, obj: dict, path: str, problems: list[str]) -> None:
    for r in schema.get("x-kubernetes-validations") or []:
        p = _rule_problem(r["rule"], value, obj, path)
        if p:
            problems.append(p)
    if isinstance(value, dict):
        for k, v in value.items():
            sub = (schema.get("properties") or {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                _walk(sub, v, obj, f"{path}.{k}" if path else k, problems)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            dups = sorted({s for s in seen if seen.count(s) > 1}, key=str)
            if dups:
                problems.append(f"{path}: duplicate {'/'.join(keys)} {dups} in a map list")
        for i, item in enumerate(value):
            _walk(schema["items"], item, obj, f"{path}[{i}]", problems)


def problems(obj: dict[str, Any]) -> list[str]:
    """Everything the API server would refuse in ``obj`` on create (empty: none)."""
    import jsonschema

    schema = version_schema(obj.get("apiVersion", "/").split("/")[-1])
    validator = jsonschema.Draft7Validator(closed(schema))
    out = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
           for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
    spec = crd()["spec"]
    if obj.get("apiVersion") != f"{spec['group']}/v1alpha1" or obj.get("kind") != spec["names"]["kind"]:
        out.append(f"apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} is not this CRD's")
    _walk(schema, obj, obj, "", out)
    return out
