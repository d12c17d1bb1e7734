"""Train/valid/test splits: published, random (seeded, stratified), by project, by time.

Every strategy moves *units*, never single samples: a unit is a group of samples
that must stay together — the members of a vulnerable/fixed pair (same
``pair_id``). So pairs always land in one split.

The random split is hand-written rather than scikit-learn's
``train_test_split``/``StratifiedGroupKFold``: those need ≥ 2 members per
stratum, do not take three arbitrary fractions, and cannot keep groups and
stratify at once with exact fractions. Here: units are grouped into strata by
their label signature, each stratum is shuffled with the seed, the strata are
interleaved evenly (systematic sampling) and the sequence is cut at the
cumulative fractions, counted in samples.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence, get_args

from streamguard.config import SplitStrategy
from streamguard.data.samples import SPLITS, Sample
from streamguard.errors import UserError

STRATEGIES: tuple[str, ...] = get_args(SplitStrategy)


def units_of(samples: Sequence[Sample]) -> list[list[int]]:
    """Indices of ``samples`` grouped into units (pairs together), in first-seen order."""
    by_pair: dict[str, list[int]] = {}
    units: list[list[int]] = []
    for i, s in enumerate(samples):
        if s.pair_id is None:
            units.append([i])
        elif s.pair_id in by_pair:
            by_pair[s.pair_id].append(i)
        else:
            by_pair[s.pair_id] = [i]
            units.append(by_pair[s.pair_id])
    return units


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise UserError("data.split_fractions: expected three non-negative train/valid/test fractions, "
                        f"got {list(fractions)}")
    total = float(sum(fractions))
    return [f / total for f in fractions]


def _cut(ordered_units: list[list[int]], fractions: Sequence[float]) -> dict[str, list[int]]:
    """Assign consecutive units to train, valid, test at the cumulative sample fractions.

    Each split with a positive fraction gets at least one unit when there are enough units.
    """
    fr = _check_fractions(fractions)
    n = sum(len(u) for u in ordered_units)
    bounds = [fr[0] * n, (fr[0] + fr[1]) * n]
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    seen = 0
    assign: list[int] = []
    for u in ordered_units:
        mid = seen + len(u) / 2
        assign.append(0 if mid < bounds[0] else 1 if mid < bounds[1] else 2)
        seen += len(u)
    # guarantee non-empty valid/test (and train) when possible: steal from the largest neighbour
    wanted = [k for k in range(3) if fr[k] > 0]
    if len(ordered_units) >= len(wanted):
        for k in wanted:
            if k not in assign:
                donor = max(wanted, key=assign.count)
                pos = [i for i, a in enumerate(assign) if a == donor]
                assign[pos[0] if k < donor else pos[-1]] = k
    for u, a in zip(ordered_units, assign):
        out[SPLITS[a]].extend(u)
    return out


def random_split(samples: Sequence[Sample], fractions: Sequence[float], seed: int) -> dict[str, list[int]]:
    """Seeded split stratified by label (pairs are their own stratum); returns sample indices per split."""
    strata: dict[tuple, list[list[int]]] = defaultdict(list)
    for u in units_of(samples):
        strata[tuple(sorted(samples[i].target for i in u))].append(u)
    rng = random.Random(seed)
    keyed = []
    for key in sorted(strata):
        units = strata[key]
        rng.shuffle(units)
        m = len(units)
        for j, u in enumerate(units):  # evenly spread each stratum over [0, 1)
            keyed.append(((j + rng.random()) / m, u))
    keyed.sort(key=lambda t: t[0])
    return _cut([u for _, u in keyed], fractions)


def project_split(samples: Sequence[Sample], fractions: Sequence[float], seed: int) -> dict[str, list[int]]:
    """Whole projects per split: no project appears in two splits (pairs follow their first member)."""
    fr = _check_fractions(fractions)
    projects: dict[str, list[int]] = defaultdict(list)
    for u in units_of(samples):
        projects[samples[u[0]].project or "<none>"].extend(u)
    needed = sum(1 for f in fr if f > 0)
    if len(projects) < needed:
        raise UserError(f"data.split_strategy=project: needs at least {needed} projects, found {len(projects)} "
                        f"({', '.join(sorted(projects))})")
    names = sorted(projects)
    random.Random(seed).shuffle(names)
    n = len(samples)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    # fill test, then valid, from the shuffled list; the rest is train. Every wanted split gets a project.
    remaining = list(names)
    for k in (2, 1):
        if fr[k] <= 0:
            continue
        target = fr[k] * n
        while remaining and (not out[SPLITS[k]] or len(out[SPLITS[k]]) + len(projects[remaining[-1]]) / 2 <= target):
            if fr[0] > 0 and len(remaining) == 1 + (k == 2 and fr[1] > 0):
                break  # keep one project for each split still to fill
            out[SPLITS[k]].extend(projects[remaining.pop()])
    for p in remaining:
        out["train"].extend(projects[p])
    return out


def time_split(samples: Sequence[Sample], fractions: Sequence[float]) -> dict[str, list[int]]:
    """Oldest units to train, newest to test, by ``date`` (ISO strings) or, when no sample has one, input order."""
    units = units_of(samples)
    dated = sum(1 for s in samples if s.date)
    if dated == 0:
        ordered = units  # input (commit) order
    elif dated < len(samples):
        raise UserError(f"data.split_strategy=time: {len(samples) - dated} of {len(samples)} samples have no date "
                        f"(give every sample a date, or none to split by input order)")
    else:
        ordered = sorted(units, key=lambda u: max(samples[i].date for i in u))
    return _cut(ordered, fractions)


def published_split(published: Sequence[str | None]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, s in enumerate(published):
        if s is not None:
            out[s].append(i)
    return out


def make_split(samples: Sequence[Sample], strategy: str, fractions: Sequence[float], seed: int,
               published: Sequence[str | None] | None = None,
               source: str = "input") -> tuple[str, dict[str, list[int]]]:
    """Split ``samples``; returns the strategy used (``auto`` resolved) and sample indices per split."""
    if strategy not in STRATEGIES:
        raise UserError(f"data.split_strategy: unknown value {strategy!r} (known: {', '.join(STRATEGIES)})")
    has_published = published is not None and any(p is not None for p in published)
    if strategy == "auto":
        strategy = "published" if has_published else "random"
    if strategy == "published":
        if not has_published:
            raise UserError(f"{source}: data.split_strategy=published but this input has no published split "
                            "(give train/valid/test files or CodeXGLUE train.txt/valid.txt/test.txt index files)")
        return strategy, published_split(published)
    if strategy == "random":
        return strategy, random_split(samples, fractions, seed)
    if strategy == "project":
        return strategy, project_split(samples, fractions, seed)
    return strategy, time_split(samples, fractions)
