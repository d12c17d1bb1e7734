"""The ``data`` check: the ingested splits are fit to train on.

Splits present and non-empty, both classes in every split, label balance (warn
below ``min_class_share``), no function (comment/whitespace-normalised) or id
shared by two splits, share of functions truncated at ``transformer.max_length``
(warn above ``truncation_warn_share``; counted with the real tokenizer when it
is cheap — the ``scratch`` tokenizer, a local checkpoint, or one the probes
already built — else a lower-bound estimate in C lexical tokens,
``hygiene.length_stats``), a graph for every sample.

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


def _count_truncated(samples: Sequence, tokenizer, max_length: int) -> int:
    if not samples:
        return 0
    enc = tokenizer([s.func for s in samples], truncation=True, max_length=max_length + 1)
    return sum(len(ids) > max_length for ids in enc["input_ids"])


def truncation(splits: dict[str, list], found: Findings, max_length: int, tokenizer: Any,
               tokenizer_fn: Callable[[], Any] | None, warn_share: float) -> None:
    """The share of functions longer than ``max_length`` tokens: with ``tokenizer`` (or ``tokenizer_fn()``, tried
    when no tokenizer is given; a failure there falls back to the estimate), else a lower-bound estimate."""
    from streamguard.data.hygiene import length_stats

    all_samples = [x for s in SPLITS for x in splits[s]]
    how = None
    if tokenizer is None and tokenizer_fn is not None:
        try:
            tokenizer = tokenizer_fn()
        except Exception as e:
            how = f"estimate (tokenizer unavailable: {one_line(e)})"
    if tokenizer is not None:
        n = _count_truncated(all_samples, tokenizer, max_length)
        how = "tokenizer"
    else:
        n = length_stats(all_samples, max_length)["n_truncated"]
        how = how or "estimate"
    share = n / len(all_samples)
    found.values["truncation"] = {"max_length": max_length, "n_truncated": n, "share": round(share, 4),
                                  "method": how if how != "estimate" else
                                  "estimate: C lexical tokens, a lower bound of subword tokens"}
    if share > warn_share:
        found.warnings.append(f"{share:.1%} of functions longer than max_length {max_length} ({how}); "
                              f"the transformer sees only their start")


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
               truncation_warn_share: float = 0.1, min_class_share: float = 0.05) -> CheckResult:
    """See the module docstring. ``tokenizer`` (or ``tokenizer_fn()``, tried when no tokenizer is given; a
    failure there falls back to the estimate) counts truncation; without one the count is an estimate."""
    found = Findings()
    splits = read_splits(data_dir, found)
    if isinstance(splits, CheckResult):
        return splits
    class_balance(splits, found, data_dir, min_class_share)
    cross_split_functions(splits, found)
    cross_split_ids(splits, found)
    if max_length:
        truncation(splits, found, max_length, tokenizer, tokenizer_fn, truncation_warn_share)
    if graphs_dir:
        graph_coverage(splits, found, graphs_dir)
    else:
        found.values["graphs"] = "not checked (no graphs directory)"
    return summary(found, graphs_dir)


def summary(found: Findings, graphs_dir: str | None) -> CheckResult:
    """Fail on any problem, warn on any warning, else pass; the message lists them (or sums the splits up)."""
    vals = found.values
    if found.problems:
        return CheckResult("data", "fail", "; ".join(found.problems + found.warnings), vals)
    sizes = "/".join(str(vals[f"{s}_size"]) for s in SPLITS)
    if found.warnings:
        return CheckResult("data", "warn", f"train/valid/test {sizes}; " + "; ".join(found.warnings), vals)
    trunc = vals.get("truncation")
    return CheckResult("data", "pass", f"train/valid/test {sizes}, both classes, no cross-split duplicates"
                       + (", graphs complete" if graphs_dir else "")
                       + (f", {trunc['share']:.1%} truncated" if trunc else ""), vals)


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


def run(gate) -> list[CheckResult]:
    return [run_check("data", lambda: check_data(gate.data_dir, gate.graphs_dir, gate.cfg.transformer.max_length,
                                                 tokenizer_fn=lambda: cheap_tokenizer(gate),
                                                 truncation_warn_share=gate.options.truncation_warn_share))]
