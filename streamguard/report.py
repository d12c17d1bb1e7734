"""Markdown and HTML reports of an aggregated run (per-seed tables, curves, confusion matrices)."""

from __future__ import annotations

import html
import math
from typing import Any

COLS = ("f1", "precision", "recall", "accuracy", "roc_auc", "pr_auc")


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def render_markdown(summary: dict[str, Any]) -> str:
    lines = ["# StreamGuard training summary", "",
             f"Data fingerprint `{summary['data_fingerprint']}`, code version {summary['code_version']}, "
             f"created {summary['created_at']}.", "",
             "## Test split, mean ± std over seeds", "",
             "| model | seeds | " + " | ".join(COLS) + " | best seed |",
             "|---|---|" + "---|" * len(COLS) + "---|"]
    for fam, m in summary["models"].items():
        cells = [f"{_f(m['mean'][k])} ± {_f(m['std'][k])}" for k in COLS]
        lines.append(f"| {fam} | {m['n_seeds']} | " + " | ".join(cells) + f" | {m['best_seed']} |")
    lines += ["", "## Per seed", "", "| model | seed | threshold | " + " | ".join(COLS) + " | lr (source) |",
              "|---|---|---|" + "---|" * len(COLS) + "---|"]
    for fam, m in summary["models"].items():
        for seed, s in m["seeds"].items():
            lr = f"{s['lr']:.3g} ({s['lr_source']})" if s.get("lr") is not None else "n/a"
            lines.append(f"| {fam} | {seed} | {s['threshold']:.3f} | " + " | ".join(_f(s[k]) for k in COLS)
                         + f" | {lr} |")
    lines += ablation_markdown(summary.get("ablation", {}))
    return "\n".join(lines) + "\n"


EXTERNAL_COLS = (("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("roc_auc", "ROC-AUC"),
                 ("vd_s", "VD-S"), ("pair_correct", "P-C"), ("pair_vulnerable", "P-V"), ("pair_benign", "P-B"),
                 ("pair_reversed", "P-R"))


def _external_rows(summary: dict[str, Any]):
    """Per external dataset: its heading and one ``(family, seeds, cells)`` row per model."""
    for name, e in summary.get("external", {}).items():
        counts = list(e["counts"].values())
        c = counts[0] if counts else {}
        head = (f"{name} (`{e['uri']}`): {c.get('evaluated')} functions evaluated, {c.get('training_overlap')} "
                f"also in the training split removed, {c.get('pairs')} vulnerable/fixed pairs")
        rows = []
        for fam, m in e["models"].items():
            rows.append((fam, m["n_seeds"], [f"{_f(m['mean'][k])} ± {_f(m['std'][k])}" if k in m["mean"] else "–"
                                             for k, _ in EXTERNAL_COLS]))
        yield head, rows


def render_external_markdown(summary: dict[str, Any]) -> str:
    """The external evaluations (``eval_uris``) section; empty without any."""
    if not summary.get("external"):
        return ""
    lines = ["", "## External evaluations, mean ± std over seeds", ""]
    for head, rows in _external_rows(summary):
        lines += [f"### {head}", "", "| model | seeds | " + " | ".join(h for _, h in EXTERNAL_COLS) + " |",
                  "|---|---|" + "---|" * len(EXTERNAL_COLS)]
        lines += [f"| {fam} | {n} | " + " | ".join(cells) + " |" for fam, n, cells in rows]
        lines.append("")
    return "\n".join(lines) + "\n"


def render_external_html(summary: dict[str, Any]) -> str:
    if not summary.get("external"):
        return ""
    parts = ["<h2>External evaluations, mean ± std over seeds</h2>"]
    for head, rows in _external_rows(summary):
        parts.append(f"<h3>{html.escape(head)}</h3><table><tr><th>model</th><th>seeds</th>"
                     + "".join(f"<th>{h}</th>" for _, h in EXTERNAL_COLS) + "</tr>")
        parts += [f"<tr><td>{fam}</td><td>{n}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                  for fam, n, cells in rows]
        parts.append("</table>")
    return "".join(parts)


def _ci(v: dict[str, float], signed: bool = False) -> str:
    f = (lambda x: "n/a" if x is None or math.isnan(x) else f"{x:+.4f}") if signed else _f
    return f"{f(v['value'])} [{f(v['low'])}, {f(v['high'])}]"


ABLATION_HEAD = ("seed", "vs", "F1", "F1 (part)", "ΔF1", "PR-AUC", "PR-AUC (part)", "ΔPR-AUC")


def _ablation_rows(abl: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(model, cells) per seed and part, in :data:`ABLATION_HEAD` order."""
    rows = []
    for name, m in abl.get("models", {}).items():
        for seed, row in m["seeds"].items():
            for part, c in row["vs"].items():
                rows.append((name, [seed, part, _ci(c["f1"]["a"]), _ci(c["f1"]["b"]), _ci(c["f1"]["diff"], True),
                                    _ci(c["pr_auc"]["a"]), _ci(c["pr_auc"]["b"]), _ci(c["pr_auc"]["diff"], True)]))
    return rows


def _ablation_overall(abl: dict[str, Any]) -> list[str]:
    out = []
    for name, m in abl.get("models", {}).items():
        for part, o in m["overall"].items():
            f, p = o["f1"], o["pr_auc"]
            out.append(f"{name} vs. {part}: mean ΔF1 {f['mean_diff']:+.4f}, ΔPR-AUC {p['mean_diff']:+.4f}; F1 at least "
                       f"as good on {f['seeds_at_least_as_good']} of {f['n_seeds']} seeds (interval above 0 on "
                       f"{f['seeds_better']}, below 0 on {f['seeds_worse']}).")
    return out


def ablation_markdown(abl: dict[str, Any]) -> list[str]:
    """The ablation section: each combined model vs. each of its parts, per seed, with bootstrap intervals."""
    if not abl.get("models"):
        return []
    level = f"{abl['level'] * 100:.0f} %"
    lines = ["", "## Ablation: each combined model vs. its parts (same test samples)", "",
             f"Value [{level} percentile bootstrap interval over test samples, {abl['n_boot']} resamples, seed "
             f"{abl['seed']}]; Δ = model − part, paired (both scored on the same resamples). F1 at each model's own "
             "validation-tuned threshold.", ""]
    for name in abl["models"]:
        lines += [f"### {name}", "", "| " + " | ".join(ABLATION_HEAD) + " |", "|" + "---|" * len(ABLATION_HEAD)]
        lines += ["| " + " | ".join(cells) + " |" for n, cells in _ablation_rows(abl) if n == name]
        lines.append("")
    lines += [f"- {t}" for t in _ablation_overall(abl)]
    return lines


def ablation_html(abl: dict[str, Any]) -> str:
    if not abl.get("models"):
        return ""
    parts = ["<h2>Ablation: each combined model vs. its parts</h2>",
             f"<p>Value [{abl['level'] * 100:.0f} % percentile bootstrap interval over test samples, "
             f"{abl['n_boot']} resamples]; Δ = model − part, paired.</p>",
             "<table><tr><th>model</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in ABLATION_HEAD) + "</tr>"]
    for name, cells in _ablation_rows(abl):
        parts.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                     + "</tr>")
    parts.append("</table><ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in _ablation_overall(abl)) + "</ul>")
    return "".join(parts)


def _svg_curve(series: list[tuple[str, list[float], list[float]]], xlabel: str, ylabel: str) -> str:
    """A unit-square line plot (ticks at 0, 0.5, 1; legend under the axes) as inline SVG.

    Hand-written (~30 lines) rather than matplotlib to keep the images' lock files small;
    the data are always in [0, 1].
    """
    w, pad, plot = 330, 40, 270
    h = plot + 50 + 14 * len(series)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    x0, y0 = pad, 8

    def px(x: float, y: float) -> str:
        return f"{x0 + x * plot:.1f},{y0 + (1 - y) * plot:.1f}"

    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="10">',
           f'<rect x="{x0}" y="{y0}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>']
    for t in (0.0, 0.5, 1.0):
        out.append(f'<text x="{x0 + t * plot:.1f}" y="{y0 + plot + 12}" text-anchor="middle">{t:g}</text>')
        out.append(f'<text x="{x0 - 4}" y="{y0 + (1 - t) * plot + 3:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{x0 + plot / 2}" y="{y0 + plot + 26}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="10" y="{y0 + plot / 2}" transform="rotate(-90 10 {y0 + plot / 2})" '
               f'text-anchor="middle">{html.escape(ylabel)}</text>')
    for i, (name, xs, ys) in enumerate(series):
        c = colors[i % len(colors)]
        if xs:
            pts = " ".join(px(x, y) for x, y in zip(xs, ys))
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{x0}" y="{y0 + plot + 42 + 14 * i}" fill="{c}">&#9632; {html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def render_html(summary: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """A self-contained HTML page: tables, ROC/PR curves, confusion matrices, training curves."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>StreamGuard report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}h3{margin-top:1.5em}</style></head><body>",
             "<h1>StreamGuard training summary</h1>",
             f"<p>Data fingerprint <code>{html.escape(str(summary['data_fingerprint']))}</code>, "
             f"code version {html.escape(summary['code_version'])}.</p>",
             "<table><tr><th>model</th><th>seeds</th>" + "".join(f"<th>{c}</th>" for c in COLS)
             + "<th>best seed</th></tr>"]
    for fam, m in summary["models"].items():
        parts.append(f"<tr><td>{fam}</td><td>{m['n_seeds']}</td>" +
                     "".join(f"<td>{_f(m['mean'][k])} ± {_f(m['std'][k])}</td>" for k in COLS) +
                     f"<td>{m['best_seed']}</td></tr>")
    parts.append("</table>")
    parts.append(ablation_html(summary.get("ablation", {})))
    by_fam: dict[str, list] = {}
    for r in results:
        by_fam.setdefault(r["family"], []).append(r)
    for fam, rs in sorted(by_fam.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        parts.append(f"<h2>{fam}</h2><div>")
        parts.append(_svg_curve([(f"seed {r['seed']}", r["curves"]["fpr"], r["curves"]["tpr"]) for r in rs],
                                "FPR", "TPR"))
        parts.append(_svg_curve([(f"seed {r['seed']}", r["curves"]["recall"], r["curves"]["precision"]) for r in rs],
                                "recall", "precision"))
        hist = []
        for r in rs:
            h = r["metadata"].get("history", [])
            if h:
                n = max(1, len(h) - 1)
                hist.append((f"seed {r['seed']} valid F1", [i / n for i in range(len(h))], [e["valid_f1"] for e in h]))
        parts.append(_svg_curve(hist, "epoch (scaled)", "valid F1"))
        parts.append("</div><table><tr><th>seed</th><th>TN</th><th>FP</th><th>FN</th><th>TP</th><th>threshold</th>"
                     "<th>lr (source)</th></tr>")
        for r in rs:
            m, card = r["metrics"], r["card"]
            lr = f"{card['lr']:.3g} ({card.get('lr_source')})" if card.get("lr") is not None else "n/a"
            parts.append(f"<tr><td>{r['seed']}</td><td>{m['tn']}</td><td>{m['fp']}</td><td>{m['fn']}</td>"
                         f"<td>{m['tp']}</td><td>{m['threshold']:.3f}</td><td>{html.escape(lr)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


# ---------------------------------------------------------------- publish: the model card and the gate

CARD_COLS = (("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("roc_auc", "ROC-AUC"),
             ("pr_auc", "PR-AUC"))


def _v(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.4f}" if signed else (f"{x}" if isinstance(x, int) else f"{x:.4f}")


def gate_markdown(gate: dict[str, Any]) -> list[str]:
    """The champion/challenger decision, both scores and every gate dataset."""
    metric = gate.get("metric")
    lines = ["## Champion / challenger gate", "",
             f"**Decision: {gate.get('decision')}** — {gate.get('reason')}.", "",
             f"Metric {metric} ({'higher' if gate.get('higher_is_better', True) else 'lower'} is better), margin "
             f"{gate.get('margin')}, rule `{gate.get('rule')}`; champion version "
             f"`{gate.get('champion_version') or 'none'}`. Challenger {_v(gate.get('challenger_score'))}, champion "
             f"{_v(gate.get('champion_score'))}.", ""]
    if gate.get("datasets"):
        lines += ["| dataset | functions | scored (seen in training removed) | challenger | champion | "
                  "challenger better by [95 % paired interval] | counts |", "|---|---:|---:|---:|---:|---:|---|"]
        for name, r in gate["datasets"].items():
            ci = r.get("delta_interval") or {}
            lines.append(f"| {name} | {r['functions']} | {r['n']} ({r['removed_seen_in_training']}) | "
                         f"{_v(r['challenger'])} | {_v(r['champion'])} | {_v(r['delta'], True)} "
                         f"[{_v(ci.get('low'), True)}, {_v(ci.get('high'), True)}] | "
                         f"{'yes' if r['better'] else ('no' if r['defined'] else 'undefined')} |")
        lines.append("")
    return lines


def render_card_markdown(card: dict[str, Any]) -> str:
    """The model card of a published version (``card.md`` beside ``card.json``)."""
    lin, test, sel = card.get("lineage") or {}, card["test"], card["selection"]
    lines = [f"# Model card: {card['model_name']} {card['version']}", "",
             f"Bundle `{card['uri']}` — seed {card['seed']}, head {card['head']} ({', '.join(card['families'])}), "
             f"threshold {card['thresholds'][card['head']]:.3f}. Champion now: `{card['champion']['version']}` "
             f"(pointer `{card['champion']['pointer']}`).", "",
             "## Lineage", "", f"- KFP run: `{lin.get('kfp_run_id')}`", f"- data fingerprint: "
             f"`{lin.get('data_fingerprint')}`", f"- image: `{lin.get('image')}`", f"- code version: "
             f"{lin.get('code_version')} (bundle written by {lin.get('bundle_code_version')})", "",
             "## Selection (validation split, never test)", "",
             f"Seed {sel['chosen_seed']} has the best validation {sel['metric']}: " + ", ".join(
                 f"seed {s} {_v(v)}" for s, v in sel["seeds"].items()) + ".", "",
             f"## Test split ({test['n']} functions)", "", "| metric | value | 95 % bootstrap interval |",
             "|---|---:|---|"]
    for k, label in CARD_COLS:
        ci = test["intervals"].get(k) or {}
        lines.append(f"| {label} | {_v(test['metrics'].get(k))} | [{_v(ci.get('low'))}, {_v(ci.get('high'))}] |")
    lines.append("")
    if card.get("external"):
        lines += ["## Other datasets (`eval_uris`)", "", "| dataset | n | F1 | ROC-AUC | PR-AUC | VD-S | P-C |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, e in card["external"].items():
            lines.append(f"| {name} | {_v(e.get('n'))} | {_v(e.get('f1'))} | {_v(e.get('roc_auc'))} | "
                         f"{_v(e.get('pr_auc'))} | {_v(e.get('vd_s'))} | {_v(e.get('pair_correct'))} |")
        lines.append("")
    lines += gate_markdown(card["gate"])
    lines += ablation_markdown(card.get("ablation") or {})
    dc = card.get("data_card") or {}
    if dc:
        lines += ["", "## Data card", "", f"Fingerprint `{dc.get('fingerprint')}`; counts "
                  f"{dc.get('counts')}; quarantined {dc.get('quarantined')}.", ""]
    return "\n".join(lines) + "\n"
