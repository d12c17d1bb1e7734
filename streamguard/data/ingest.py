"""``ingest``: read a dataset, validate, quarantine bad rows, clean, split, report.

Writes into ``out_dir``:

* ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` — Samples (see samples.py);
* ``quarantine.jsonl`` — every bad row: ``source`` file, ``line``, ``reason``,
  ``detail``, ``excerpt`` (the first 200 characters of the raw row);
* ``removed.jsonl`` — every valid row that hygiene removed (duplicate, conflicting
  label) or that no published index names, with its reason;
* ``data_report.json`` (atomic) — counts per split, label balance, bad rows by reason,
  hygiene counts, leakage, lengths, the data check (``views``: per view, the
  share of pairs whose two sides are identical, of truncated samples and of
  conflicting samples, for the rows as read and as kept; ``streamguard.data.views``),
  the data fingerprint, the input;
* ``data_card.md`` — the same for people.

The data check here has no tokenizer and no graphs: it counts the ``lexical``
view (what no setting separates) and ``transformer_estimate`` (the windows'
token budget in C lexical tokens); pre-flight repeats it with the real
tokenizer and windows and with the graphs (``gnn``, ``fusion``).

Bad rows never crash the run and are never dropped silently. When they exceed
``cfg.max_bad_share`` of the rows, ``ingest`` raises :class:`UserError` (one line:
file, count, share, threshold) after writing the quarantine file.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from streamguard.config import DataConfig, TransformerConfig
from streamguard.data import hygiene, views
from streamguard.data.loaders import Row, fetch, is_missing, load, to_sample
from streamguard.data.samples import SPLITS, Sample, fingerprint, write_samples
from streamguard.data.splits import make_split
from streamguard.errors import UserError
from streamguard.jsonio import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _quarantine_record(row: Row, reason: str, detail: str) -> dict:
    return {"source": row.source, "line": row.line, "reason": reason, "detail": detail, "excerpt": row.raw}


class ValidRows(NamedTuple):
    samples: list[Sample]
    splits: list[str | None]
    """Published split of each sample (None: the input carries none)."""
    labelled: list[bool]
    """Whether each sample's row had a label (always, unless ``require_target=False``)."""
    quarantine: list[dict]
    """One record per bad row: ``source``, ``line``, ``reason``, ``detail``, ``excerpt``."""


def valid_rows(rows: list[Row], max_func_bytes: int, require_target: bool = True) -> ValidRows:
    """The rows that make valid Samples, and the quarantine records of the others (unreadable, invalid,
    a repeated ``id``). ``require_target=False`` (``predict``: functions whose label nobody knows yet) lets
    a row without ``target`` through with target 0 and ``labelled`` False; a bad target is still bad."""
    out = ValidRows([], [], [], [])
    seen_ids: dict[str, Row] = {}
    for row in rows:
        if row.error is not None:
            out.quarantine.append(_quarantine_record(row, *row.error))
            continue
        data, labelled = row.data, True
        if not require_target and is_missing(data.get("target")):
            data, labelled = {**data, "target": 0}, False
        res = to_sample(data, max_func_bytes)
        if isinstance(res, tuple):
            out.quarantine.append(_quarantine_record(row, *res))
            continue
        if res.id in seen_ids:
            first = seen_ids[res.id]
            out.quarantine.append(_quarantine_record(row, "duplicate_id",
                                                     f"id {res.id!r} already used at {first.source}:{first.line}"))
            continue
        seen_ids[res.id] = row
        out.samples.append(res)
        out.splits.append(row.split)
        out.labelled.append(labelled)
    return out


def ingest(input_path: str, out_dir: str, cfg: DataConfig, fmt: str = "auto", *,
           max_tokens: int = TransformerConfig.max_length, store_settings: Any = None,
           windowing: Any = None) -> dict:
    """Ingest ``input_path`` (file/directory path, http(s) URL or s3:// URI; .gz/.zst too) into ``out_dir``;
    returns the report.

    ``max_tokens``: the length report counts functions longer than this (the CLI and the component pass
    ``transformer.max_length``, one window). ``windowing``: the transformer's window settings
    (``models.windowing.Windowing``; None: the defaults at ``max_tokens``) for the data check's token budget.
    ``store_settings``: the config's ``store`` section, for an s3:// input (None: defaults and environment)."""
    if windowing is None:
        from streamguard.models.windowing import Windowing

        windowing = Windowing(window=max_tokens, stride=max_tokens - 2, max_windows=TransformerConfig.max_windows)
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("data_report.json", "data_card.md"):
        (out / stale).unlink(missing_ok=True)

    with fetch(str(input_path), store_settings) as local:
        loaded = load(local, fmt, display=str(input_path))

    valid = valid_rows(loaded.rows, cfg.max_func_bytes)
    samples, published, quarantine = valid.samples, valid.splits, valid.quarantine

    n_rows = len(loaded.rows)
    n_bad = len(quarantine)
    if n_rows == 0:
        raise UserError(f"{input_path}: no rows (empty input)")
    write_bytes_atomic(out / "quarantine.jsonl", jsonl_bytes(quarantine))
    share = n_bad / n_rows
    bad_by_reason = dict(sorted(Counter(q["reason"] for q in quarantine).items()))
    if share > cfg.max_bad_share:
        reasons = ", ".join(f"{k}={v}" for k, v in bad_by_reason.items())
        raise UserError(f"{input_path}: {n_bad} of {n_rows} rows are bad ({share:.1%}) > data.max_bad_share="
                        f"{cfg.max_bad_share:.1%} ({reasons}); see {out / 'quarantine.jsonl'}")
    if not samples:
        raise UserError(f"{input_path}: no valid rows")
    keys: dict = {}
    as_read = data_check(samples, windowing.budget, keys)

    # hygiene: dedup before splitting (published: keep the train copy, drop it from valid/test)
    removed: list[dict] = [{"id": r.data.get("id"), "reason": "not_in_published_split", "source": r.source,
                            "line": r.line} for r in loaded.unassigned]
    if cfg.dedup:
        rank = {s: k for k, s in enumerate(SPLITS)}
        order = sorted(range(len(samples)), key=lambda i: (rank.get(published[i], 0), i))
        keep, dropped, hyg = hygiene.deduplicate(samples, order)
        removed += dropped
        samples = [samples[i] for i in keep]
        published = [published[i] for i in keep]
    else:
        hyg = {"skipped": True, "kept": len(samples)}

    strategy, idx = make_split(samples, cfg.split_strategy, cfg.split_fractions, cfg.split_seed,
                               published if loaded.published else None, source=str(input_path))
    splits = {s: [samples[i] for i in sorted(idx[s])] for s in SPLITS}
    leaks = hygiene.leakage(splits)
    if cfg.dedup and any(leaks.values()):  # dedup before splitting makes this impossible; guard the invariant
        raise RuntimeError(f"internal error: cross-split duplicates after cleaning: {leaks}")

    for s in SPLITS:
        write_samples(out / f"{s}.jsonl", splits[s])
    write_bytes_atomic(out / "removed.jsonl", jsonl_bytes(removed))

    counts = {s: len(splits[s]) for s in SPLITS}
    balance = {}
    for s in SPLITS:
        pos = sum(x.target for x in splits[s])
        balance[s] = {"safe": counts[s] - pos, "vulnerable": pos,
                      "vulnerable_share": round(pos / counts[s], 4) if counts[s] else None}
    all_kept = [x for s in SPLITS for x in splits[s]]
    kept_views = data_check(all_kept, windowing.budget, keys)
    warnings = class_warnings(balance) + views.warnings(kept_views, cfg.max_identical_view_share)
    for w in warnings:
        log.warning("ingest %s: %s", input_path, w)
    pairs = {s: len({x.pair_id for x in splits[s] if x.pair_id}) for s in SPLITS}
    report = {
        "input": str(input_path),
        "format": loaded.format,
        "files": loaded.files,
        "rows_read": n_rows,
        "valid_rows": n_rows - n_bad,
        "quarantined": n_bad,
        "bad_rows": bad_by_reason,
        "bad_share": round(share, 6),
        "max_bad_share": cfg.max_bad_share,
        "unassigned": len(loaded.unassigned),
        "hygiene": hyg,
        "removed": dict(sorted(Counter(r["reason"] for r in removed).items())),
        "split_strategy": strategy,
        "split_seed": cfg.split_seed,
        "split_fractions": list(cfg.split_fractions),
        "counts": counts,
        "label_balance": balance,
        "warnings": warnings,
        "pairs": pairs,
        "leakage": leaks,
        "lengths": hygiene.length_stats(all_kept, max_tokens, [keys[id(s)][3] for s in all_kept]),
        "views": {"windowing": windowing.to_dict(), "token_budget": windowing.budget,
                  "max_identical_view_share": cfg.max_identical_view_share, "as_read": as_read, "kept": kept_views},
        "fingerprint": fingerprint(splits),
    }
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(out / "data_report.json", report)
    write_bytes_atomic(out / "data_card.md", data_card(report).encode("utf-8"))
    log.info("ingested %s: %s (quarantined %d)", input_path, counts, n_bad)
    return report


def data_check(samples: list[Sample], budget: int, cache: dict | None = None) -> list[dict]:
    """The data check's views that need no tokenizer and no graphs (module docstring). ``cache`` (by sample
    object): each sample's lexical and estimate keys, computed once for the rows as read and as kept."""
    cache = {} if cache is None else cache
    for s in samples:
        if id(s) not in cache:
            toks = hygiene.tokens(s.func)
            cache[id(s)] = (views.digest_tokens(toks), views.digest_tokens(toks[:budget]), len(toks) > budget,
                            len(toks))
    rows = [cache[id(s)] for s in samples]
    lexical = views.View("lexical", [r[0] for r in rows], [False] * len(rows), None, views.LEXICAL_METHOD)
    estimate = views.View("transformer_estimate", [r[1] for r in rows], [r[2] for r in rows],
                          "transformer.max_windows", views.estimate_method(budget))
    return [views.view_stats(lexical, samples), views.view_stats(estimate, samples, lexical)]


def class_warnings(balance: dict[str, dict]) -> list[str]:
    """A dataset with one class, or a split left without one: training cannot learn or be judged on it
    (pre-flight's data check then fails with exit 4)."""
    safe = sum(b["safe"] for b in balance.values())
    vuln = sum(b["vulnerable"] for b in balance.values())
    if not (safe and vuln):
        return [f"the dataset has one class only ({safe + vuln} samples, all {'safe' if safe else 'vulnerable'}); "
                f"a detector needs both (pre-flight will fail)"]
    out = []
    for s, b in balance.items():
        n = b["safe"] + b["vulnerable"]
        if n == 0:
            out.append(f"split {s} is empty; pre-flight will fail")
        elif not (b["safe"] and b["vulnerable"]):
            missing, have = ("safe", "vulnerable") if not b["safe"] else ("vulnerable", "safe")
            out.append(f"split {s} has no {missing} samples ({n} samples, all {have}); pre-flight will fail")
    return out


def data_card(r: dict) -> str:
    """The report as a Markdown data card."""
    h = r["hygiene"]
    lines = [
        "# Data card", "",
        f"- input: `{r['input']}` (format **{r['format']}**, {len(r['files'])} file(s))",
        f"- fingerprint: `{r['fingerprint']}`",
        f"- split: **{r['split_strategy']}**" + (f" (seed {r['split_seed']}, fractions {r['split_fractions']})"
                                                  if r["split_strategy"] in ("random", "project", "time") else ""),
        "", "## Rows", "",
        "| step | rows |", "|---|---:|",
        f"| read | {r['rows_read']} |",
        f"| quarantined (bad rows) | {r['quarantined']} ({r['bad_share']:.2%}; limit {r['max_bad_share']:.0%}) |",
    ]
    lines += [f"| &nbsp;&nbsp;{k} | {v} |" for k, v in r["bad_rows"].items()]
    if r["unassigned"]:
        lines.append(f"| not in the published split index | {r['unassigned']} |")
    if h.get("skipped"):
        lines.append("| hygiene | skipped (data.dedup=false) |")
    else:
        lines += [
            f"| conflicting labels (identical code, both labels; all copies removed) | "
            f"{h['conflicting_label_samples']} in {h['conflicting_label_groups']} groups |",
            f"| exact duplicates removed | {h['exact_duplicates']} |",
            f"| whitespace/comment-normalised duplicates removed | {h['normalised_duplicates']} |",
        ]
    lines.append(f"| kept | {sum(r['counts'].values())} |")
    lines += ["", "## Splits", "", "| split | functions | safe | vulnerable | vulnerable share | pairs |",
              "|---|---:|---:|---:|---:|---:|"]
    for s, n in r["counts"].items():
        b = r["label_balance"][s]
        share = "–" if b["vulnerable_share"] is None else f"{b['vulnerable_share']:.1%}"
        lines.append(f"| {s} | {n} | {b['safe']} | {b['vulnerable']} | {share} | {r['pairs'][s]} |")
    if r.get("warnings"):
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in r["warnings"]]
    leak = ", ".join(f"{k}: {v}" for k, v in r["leakage"].items())
    lines += ["", f"Cross-split leakage (normalised functions shared by two splits): {leak}.", ""]
    L = r["lengths"]
    if L.get("n"):
        lines += ["## Lengths", "", f"{L['unit']}: mean {L['mean']}, median {L['p50']:.0f}, p90 {L['p90']:.0f}, "
                  f"p95 {L['p95']:.0f}, p99 {L['p99']:.0f}, max {L['max']}.",
                  f"Longer than one transformer window ({L['max_tokens']} tokens; read in several windows, what is "
                  f"beyond them in the data check below): {L['n_truncated']} "
                  f"({L['share_truncated']:.1%}; a lower bound — subword tokens are at least as many).", ""]
    V = r.get("views")
    if V:
        lines += ["## What the models see (data check)", "",
                  f"Per view: vulnerable/fixed pairs whose two sides are identical inputs, samples seen only in part "
                  f"(beyond the transformer's {V['windowing']['max_windows']} windows of {V['windowing']['window']}: "
                  f"{V['token_budget']} tokens), samples whose input occurs with both labels. Kept rows:", ""]
        lines += views.markdown(V["kept"])
        lex = V["as_read"][0]
        lines += ["", f"As read, before cleaning: {lex['identical_pairs']} of {lex['pairs']} pairs identical lexically "
                  f"({lex['identical_pair_share']:.1%}), {V['as_read'][1]['identical_pairs']} in the transformer "
                  f"estimate. Warnings above data.max_identical_view_share={V['max_identical_view_share']:.0%}. "
                  "Pre-flight repeats this with the real tokenizer and windows and with the graphs (gnn, fusion).",
                  ""]
    lines += ["Bad rows are in `quarantine.jsonl`, removed rows in `removed.jsonl`.", ""]
    return "\n".join(lines)
