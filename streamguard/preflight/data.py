"""The ``data`` check: the ingested splits are fit to train on.

Splits present and non-empty, both classes in every split, label balance (warn
below ``min_class_share``), no function (comment/whitespace-normalised) or id
shared by two splits, share of functions truncated beyond the transformer's
windows (``transformer.max_windows`` x ``window``; warn above
``truncation_warn_share``; counted with the real tokenizer when it is cheap —
the ``scratch`` tokenizer, a local checkpoint, or one the probes already built —
else an estimate in C lexical tokens), a graph for every sample, and the
per-family view check (:func:`identical_views`, ``streamguard.data.views``):
for each registered family whose inputs are there, the share of vulnerable/fixed
pairs whose two sides are identical inputs to it (token ids in its windows, the
graph after the node cap, both for the fusion), of truncated and of conflicting
samples, with a warning above ``data.max_identical_view_share`` naming the
setting that helps.

:func:`check_data` reads the splits and runs one small function per finding,
each adding to one :class:`Findings` (values, problems, warnings): a new data
check is one more such function and one line in :func:`check_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from streamguard.data.samples import SPLITS, read_split
from streamguard.preflight.result import CheckResult, one_line, run_check


@dataclass
class Findings:
    """What the data check measured (``values``, in the report) and found: problems fail it, warnings warn."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_splits(data_dir: str, found: Findings) -> dict[str, list] | CheckResult:
    """Every split's samples, with their sizes and positive shares in ``found.values``; a failed check when a
    split file is missing or empty."""
    splits: dict[str, list] = {}
    vals = found.values
    for s in SPLITS:
        p = Path(data_dir) / f"{s}.jsonl"
        if not p.is_file():
            return CheckResult("data", "fail", f"{p}: split file missing", vals)
        splits[s] = read_split(data_dir, s)
        if not splits[s]:
            return CheckResult("data", "fail", f"{p}: split is empty", vals)
        vals[f"{s}_size"] = len(splits[s])
        vals[f"{s}_positive_share"] = round(sum(x.target for x in splits[s]) / len(splits[s]), 4)
    return splits


def class_balance(splits: dict[str, list], found: Findings, data_dir: str, min_class_share: float) -> None:
    """Both classes in the dataset and in every split; a warning below ``min_class_share`` of either."""
    n_all = sum(len(splits[s]) for s in SPLITS)
    n_vuln = sum(x.target for s in SPLITS for x in splits[s])
    if n_vuln in (0, n_all):  # one class in the whole dataset: one finding, not one per split
        found.problems.append(f"{data_dir}: the dataset has one class only ({n_all} samples, all "
                              f"{'vulnerable' if n_vuln else 'safe'}); a detector needs safe and vulnerable functions")
        return
    for s in SPLITS:
        share = found.values[f"{s}_positive_share"]
        if share in (0.0, 1.0):
            found.problems.append(f"split {s} has a single class ({'all vulnerable' if share else 'all safe'}; "
                                  f"{len(splits[s])} samples)")
        elif min(share, 1 - share) < min_class_share:
            found.warnings.append(f"split {s}: extreme label balance ({share:.1%} vulnerable)")


def cross_split_functions(splits: dict[str, list], found: Findings) -> None:
    """No function (comment/whitespace-normalised, ``hygiene.leakage``) in two splits."""
    from streamguard.data.hygiene import leakage

    leaks = leakage(splits)
    found.values["duplicates_across_splits"] = leaks
    if any(leaks.values()):
        found.problems.append("functions shared across splits (normalised): "
                              + ", ".join(f"{k} {v}" for k, v in leaks.items() if v))


def cross_split_ids(splits: dict[str, list], found: Findings) -> None:
    """No sample id in two splits."""
    ids = {s: {x.id for x in splits[s]} for s in SPLITS}
    id_leaks = {f"{a}/{b}": len(ids[a] & ids[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]}
    found.values["ids_across_splits"] = id_leaks
    if any(id_leaks.values()):
        found.problems.append("sample ids shared across splits: "
                              + ", ".join(f"{k} {v}" for k, v in id_leaks.items() if v))


def _count_truncated(samples: Sequence, tokenizer, win) -> int:
    if not samples:
        return 0
    enc = tokenizer([win.text(s.func) for s in samples], add_special_tokens=False, truncation=False, verbose=False)
    return sum(len(ids) > win.budget for ids in enc["input_ids"])


def truncation(splits: dict[str, list], found: Findings, max_length: int, tokenizer: Any,
               tokenizer_fn: Callable[[], Any] | None, warn_share: float, windowing: Any = None) -> None:
    """The share of functions with tokens beyond the transformer's windows (``windowing``; None: one window of
    ``max_length``): with ``tokenizer`` (or ``tokenizer_fn()``, tried when no tokenizer is given; a failure there
    falls back to the estimate), else an estimate in C lexical tokens."""
    from streamguard.data.hygiene import length_stats
    from streamguard.models.windowing import Windowing

    win = windowing or Windowing(window=max_length, stride=max_length - 2, max_windows=1)
    budget = win.budget
    all_samples = [x for s in SPLITS for x in splits[s]]
    how = None
    if tokenizer is None and tokenizer_fn is not None:
        try:
            tokenizer = tokenizer_fn()
        except Exception as e:
            how = f"estimate (tokenizer unavailable: {one_line(e)})"
    if tokenizer is not None:
        n = _count_truncated(all_samples, tokenizer, win)
        how = "tokenizer"
    else:
        n = length_stats(all_samples, budget)["n_truncated"]
        how = how or "estimate"
    share = n / len(all_samples)
    found.values["truncation"] = {"max_length": max_length, "windowing": win.to_dict(), "token_budget": budget,
                                  "n_truncated": n, "share": round(share, 4),
                                  "method": how if how != "estimate" else
                                  "estimate: C lexical tokens (subword tokens are usually more)"}
    if share > warn_share:
        found.warnings.append(f"{share:.1%} of functions longer than the transformer's {win.max_windows} window(s) "
                              f"of {win.window} ({budget} tokens, {how}); raise transformer.max_windows to show it "
                              "more of them")


def identical_views(splits: dict[str, list], found: Findings, views_fn: Callable[[str], list], max_share: float,
                    skipped: dict[str, str] | None = None) -> None:
    """Per family view (``views_fn(split)``: one ``data.views.View`` per family for the samples of ``split``),
    over all splits: identical pairs, truncated and conflicting samples (``data.views.view_stats``, with the
    lexical view for comparison); a warning per view above ``max_share``. ``skipped``: views not computed, why."""
    from streamguard.data import views

    samples = [x for s in SPLITS for x in splits[s]]
    parts = [views_fn(s) for s in SPLITS]
    lexical = views.lexical_view(samples)
    stats = [views.view_stats(lexical, samples)]
    for k in range(len(parts[0])):
        vs = [p[k] for p in parts]
        merged = views.View(vs[0].name, sum((v.keys for v in vs), []), sum((v.truncated for v in vs), []),
                            vs[0].setting, vs[0].method)
        stats.append(views.view_stats(merged, samples, lexical))
    found.values["views"] = {"max_identical_view_share": max_share, "stats": stats, "skipped": skipped or {}}
    found.warnings += views.warnings(stats, max_share)


def graph_coverage(splits: dict[str, list], found: Findings, graphs_dir: str) -> None:
    """Every sample has a graph (read as training reads them, ``families.gnn.split_graphs``)."""
    from streamguard.families.gnn import split_graphs

    for s in SPLITS:
        try:
            _, missing = split_graphs(graphs_dir, s, splits[s])
        except Exception as e:
            found.problems.append(f"{graphs_dir}: graphs of split {s} unreadable ({one_line(e)})")
            continue
        found.values[f"{s}_graphs_missing"] = len(missing)
        if missing:
            found.problems.append(f"split {s}: {len(missing)} samples without a graph (first {missing[0]!r})")


def check_data(data_dir: str, graphs_dir: str | None, max_length: int | None = None, *,
               tokenizer: Any = None, tokenizer_fn: Callable[[], Any] | None = None,
               truncation_warn_share: float = 0.1, min_class_share: float = 0.05, windowing: Any = None,
               views_fn: Callable[[str], list] | None = None, max_identical_view_share: float = 0.05,
               views_skipped: dict[str, str] | None = None) -> CheckResult:
    """See the module docstring. ``tokenizer`` (or ``tokenizer_fn()``, tried when no tokenizer is given; a
    failure there falls back to the estimate) counts truncation beyond ``windowing``; without one the count is an
    estimate. ``views_fn(split)``: the families' views of a split (None: the view check is not run)."""
    found = Findings()
    splits = read_splits(data_dir, found)
    if isinstance(splits, CheckResult):
        return splits
    class_balance(splits, found, data_dir, min_class_share)
    cross_split_functions(splits, found)
    cross_split_ids(splits, found)
    if max_length:
        truncation(splits, found, max_length, tokenizer, tokenizer_fn, truncation_warn_share, windowing)
    if graphs_dir:
        graph_coverage(splits, found, graphs_dir)
    else:
        found.values["graphs"] = "not checked (no graphs directory)"
    if views_fn is not None and not found.problems:
        try:
            identical_views(splits, found, views_fn, max_identical_view_share, views_skipped)
        except Exception as e:  # the view check informs; it never hides the other findings
            found.values["views"] = {"error": one_line(e)}
    return summary(found, graphs_dir)


def summary(found: Findings, graphs_dir: str | None) -> CheckResult:
    """Fail on any problem, warn on any warning, else pass; the message lists them (or sums the splits up)."""
    vals = found.values
    if found.problems:
        return CheckResult("data", "fail", "; ".join(found.problems + found.warnings), vals)
    sizes = "/".join(str(vals[f"{s}_size"]) for s in SPLITS)
    stats = vals.get("views", {}).get("stats")
    same = ("; identical pairs per view: " + ", ".join(f"{st['view']} {st['identical_pairs']}/{st['pairs']}"
                                                        for st in stats)) if stats and stats[0]["pairs"] else ""
    if found.warnings:
        return CheckResult("data", "warn", f"train/valid/test {sizes}; " + "; ".join(found.warnings) + same, vals)
    trunc = vals.get("truncation")
    return CheckResult("data", "pass", f"train/valid/test {sizes}, both classes, no cross-split duplicates"
                       + (", graphs complete" if graphs_dir else "")
                       + (f", {trunc['share']:.1%} truncated" if trunc else "") + same, vals)


def cheap_tokenizer(gate) -> Any:
    """The real tokenizer when it is cheap — the probes build it anyway, or ``scratch`` / a local checkpoint —
    else None (the truncation count is then an estimate)."""
    from streamguard import families

    pretrained = gate.cfg.transformer.pretrained
    if gate.probes_build_transformer or pretrained == "scratch":
        return families.transformer.probe_parts(gate.probes).tokenizer
    if Path(pretrained).is_dir():
        from streamguard.models.transformer import load_tokenizer

        return load_tokenizer(pretrained, gate.cfg.transformer.max_length)
    return None


def family_views(gate) -> tuple[Callable[[str], list], dict[str, str]]:
    """``views_fn(split)`` over the registered families whose view is cheap here (the transformer's needs the
    cheap tokenizer, the GNN's the graphs; a family that ``requires`` others needs theirs), and why the others
    are skipped."""
    from streamguard import families

    skipped: dict[str, str] = {}
    names = []
    for name in families.names():
        fam = families.get(name)
        needs_graphs = any(i.name == "graphs" for i in fam.inputs) or name == "gnn"
        if needs_graphs and not gate.graphs_dir:
            skipped[name] = "no graphs directory"
        elif "transformer" in (name, *fam.requires) and cheap_tokenizer(gate) is None:
            skipped[name] = f"tokenizer of {gate.cfg.transformer.pretrained!r} not cheap here (no probe builds it)"
        elif any(r in skipped for r in fam.requires):
            skipped[name] = "needs the views of " + ", ".join(r for r in fam.requires if r in skipped)
        else:
            names.append(name)
    return (lambda split: [families.get(n).views(gate.probes, split) for n in names]), skipped


def run(gate) -> list[CheckResult]:
    from streamguard.models.windowing import Windowing

    def check() -> CheckResult:
        views_fn, skipped = family_views(gate)
        return check_data(gate.data_dir, gate.graphs_dir, gate.cfg.transformer.max_length,
                          tokenizer_fn=lambda: cheap_tokenizer(gate),
                          truncation_warn_share=gate.options.truncation_warn_share,
                          windowing=Windowing.from_config(gate.cfg.transformer), views_fn=views_fn,
                          max_identical_view_share=gate.cfg.data.max_identical_view_share, views_skipped=skipped)

    return [run_check("data", check)]
