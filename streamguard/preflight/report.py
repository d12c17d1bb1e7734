"""The gate's reports: ``preflight_report.json`` (every result with its measured values) and
``preflight_report.md`` (a table and the values, for the KFP UI), and one log line per check."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamguard.jsonio import write_json_atomic
from streamguard.preflight.result import CheckResult, log


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(v: Any, limit: int = 160) -> str:
    text = json.dumps(v, default=str, ensure_ascii=False) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_markdown(results: list[CheckResult], seconds: float | None = None) -> str:
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    failed = [r for r in results if r.blocking]
    head = "FAILED: " + ", ".join(r.name for r in failed) if failed else "PASSED"
    lines = ["# StreamGuard pre-flight", "", f"**{head}**" + (f" ({seconds:.1f} s)" if seconds is not None else ""),
             "", "| check | status | required | seconds | message |", "|---|---|---|---:|---|"]
    for r in results:
        lines.append(f"| {r.name} | {icon[r.status]} | {'yes' if r.required else 'no'} | {r.seconds:.2f} "
                     f"| {_md(r.message)} |")
    lines += ["", "## Measured values", ""]
    for r in results:
        vals = {k: v for k, v in r.values.items() if k not in ("traceback", "train_losses")}
        if vals:
            lines.append(f"- **{r.name}**: " + "; ".join(f"{k} = {_md(_short(v))}" for k, v in vals.items()))
    return "\n".join(lines) + "\n"


def write_reports(results: list[CheckResult], seconds: float, require_gpu: bool, json_path: str,
                  md_path: str) -> dict[str, Any]:
    """Write both reports and log each result (fail/warn as warnings); returns the JSON report."""
    failed = [r for r in results if r.blocking]
    report = {"passed": not failed, "failed": [r.name for r in failed], "seconds": seconds,
              "require_gpu": require_gpu, "checks": [asdict(r) for r in results]}
    write_json_atomic(json_path, report)
    Path(md_path).parent.mkdir(parents=True, exist_ok=True)
    Path(md_path).write_text(render_markdown(results, seconds))
    for r in results:
        (log.warning if r.status in ("fail", "warn") else log.info)("preflight %-20s %s  %s (%.2f s)", r.name,
                                                                     r.status.upper(), r.message, r.seconds)
    return report
