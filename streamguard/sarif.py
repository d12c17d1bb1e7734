"""SARIF 2.1.0 logs of ``streamguard scan`` (what GitHub code scanning and IDEs read).

One run; the tool's driver is StreamGuard (name, version) with the one rule of
the bundle; one ``result`` per function scored at or above the threshold, with
its physical location (the file relative to ``%SRCROOT%`` and the function's
start and end line), its logical location (the function), the score in
``properties`` (and as ``rank``, 0-100) and a fingerprint that stays put when
other code moves. Files skipped by the scan are tool execution notifications of
the invocation. The structure follows the OASIS SARIF 2.1.0 schema (the tests
validate every log against the official schema file).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

VERSION = "2.1.0"
SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"


def _uri(rel: str) -> str:
    return urllib.parse.quote(rel, safe="/")


def rule_descriptor(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's rule (``id``, ``name``, ``short``, ``full``, ``level``, ``tags``) as a SARIF reportingDescriptor."""
    out: dict[str, Any] = {"id": rule["id"], "shortDescription": {"text": rule["short"]},
                           "defaultConfiguration": {"level": rule.get("level", "warning")}}
    if rule.get("name"):
        out["name"] = rule["name"]
    if rule.get("full"):
        out["fullDescription"] = {"text": rule["full"]}
        out["help"] = {"text": rule["full"]}
    if rule.get("tags"):
        out["properties"] = {"tags": list(rule["tags"])}
    return out


def fingerprint(rel: str, name: str, code_key: str) -> str:
    """Identifies a finding across runs: the file, the function's name and its normalised code."""
    return hashlib.sha256(f"{rel}\0{name}\0{code_key}".encode()).hexdigest()[:32]


def log(findings: Sequence[Mapping[str, Any]], *, rule: Mapping[str, Any], tool_version: str, root: Path,
        threshold: float, skipped: Sequence[Mapping[str, str]] = (), properties: Mapping[str, Any] | None = None,
        ) -> dict[str, Any]:
    """The SARIF log. ``findings``: dicts with ``uri`` (relative to ``root``, or an absolute file URI),
    ``name``, ``start_line``, ``end_line``, ``score``, ``scores`` (per family), ``fingerprint``.
    ``skipped``: ``{"uri", "reason"}`` of the files not scanned."""
    level = rule.get("level", "warning")
    results = []
    for f in findings:
        loc: dict[str, Any] = {"uri": f["uri"]} if "://" in f["uri"] else {"uri": _uri(f["uri"]), "uriBaseId": SRCROOT}
        results.append({
            "ruleId": rule["id"], "ruleIndex": 0, "level": level,
            "message": {"text": f"Function '{f['name']}' scores {f['score']:.3f} (threshold {threshold:.3f}): "
                                "the model finds it likely vulnerable."},
            "locations": [{
                "physicalLocation": {"artifactLocation": loc,
                                     "region": {"startLine": int(f["start_line"]), "endLine": int(f["end_line"])}},
                "logicalLocations": [{"name": f["name"], "kind": "function"}],
            }],
            "partialFingerprints": {"streamguardFunction/v1": f["fingerprint"]},
            "rank": round(100.0 * float(f["score"]), 2),
            "properties": {"score": round(float(f["score"]), 6),
                           "scores": {k: round(float(v), 6) for k, v in f["scores"].items()},
                           "threshold": round(float(threshold), 6)},
        })
    notes = [{"level": "note", "message": {"text": f"skipped ({s['reason']})"},
              "locations": [{"physicalLocation": {"artifactLocation":
                                                  {"uri": s["uri"]} if "://" in s["uri"]
                                                  else {"uri": _uri(s["uri"]), "uriBaseId": SRCROOT}}}]}
             for s in skipped]
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if notes:
        invocation["toolExecutionNotifications"] = notes
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "StreamGuard", "version": tool_version, "semanticVersion": tool_version,
                            "rules": [rule_descriptor(rule)]}},
        "originalUriBaseIds": {SRCROOT: {"uri": Path(root).resolve().as_uri().rstrip("/") + "/"}},
        "invocations": [invocation],
        "results": results,
    }
    if properties:
        run["properties"] = dict(properties)
    return {"$schema": SCHEMA_URI, "version": VERSION, "runs": [run]}
