"""Hygiene (dedup, conflicting labels, leakage, lengths) and each split strategy's invariants."""

import json
from collections import Counter

import pytest

from streamguard.config import DataConfig
from streamguard.data import hygiene
from streamguard.data.ingest import ingest
from streamguard.data.samples import SPLITS, Sample, read_split
from streamguard.data.splits import make_split, random_split
from streamguard.errors import UserError

BASE = "int add(int a, int b)\n{\n    return a + b;\n}\n"
SPACED = "int  add( int a,int b ) {\n\treturn a+b;\n\n}"
COMMENTED = "/* adds */ int add(int a, int b) // two ints\n{\n    return a + b; /* sum */\n}\n"


def _f(i: int) -> str:
    return f"int fn_{i}(int a)\n{{\n    return a * {i};\n}}\n"


def test_normalise_ignores_whitespace_and_comments_but_not_strings():
    assert hygiene.normalise(BASE) == hygiene.normalise(SPACED) == hygiene.normalise(COMMENTED)
    assert hygiene.normalise('char *s = "/* not a comment */";') != hygiene.normalise('char *s = "";')
    assert hygiene.normalise('p("a // b");') != hygiene.normalise('p("a");')
    assert hygiene.normalise("return a - b;") != hygiene.normalise("return a + b;")


def test_dedup_removes_crafted_duplicates_and_conflicting_labels():
    samples = [Sample("a", BASE, 1), Sample("b", BASE, 1), Sample("c", SPACED, 1), Sample("d", COMMENTED, 1),
               Sample("e", _f(1), 0), Sample("f", _f(1).replace("    ", "  "), 1),  # same code, both labels
               Sample("g", _f(2), 0)]
    keep, removed, stats = hygiene.deduplicate(samples)
    assert [samples[i].id for i in keep] == ["a", "g"]
    assert stats == {"conflicting_label_groups": 1, "conflicting_label_samples": 2, "exact_duplicates": 1,
                     "normalised_duplicates": 2, "kept": 2}
    why = {r["id"]: r["reason"] for r in removed}
    assert why == {"b": "exact_duplicate", "c": "normalised_duplicate", "d": "normalised_duplicate",
                   "e": "conflicting_labels", "f": "conflicting_labels"}


def test_ingest_reports_dedup_in_the_card_and_leaves_no_leakage(tmp_path):
    rows = [{"func": _f(i), "target": i % 2, "idx": i} for i in range(100)]
    rows += [{"func": _f(i).replace("\n", "\n\n") + "// copy\n", "target": i % 2, "idx": 1000 + i} for i in range(10)]
    rows += [{"func": _f(i), "target": i % 2, "idx": 2000 + i} for i in range(10, 15)]
    rows += [{"func": _f(i), "target": 1 - i % 2, "idx": 3000 + i} for i in range(20, 23)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    h = report["hygiene"]
    assert (h["exact_duplicates"], h["normalised_duplicates"], h["conflicting_label_samples"]) == (5, 10, 6)
    assert sum(report["counts"].values()) == 100 - 3
    assert report["leakage"] == {"train/valid": 0, "train/test": 0, "valid/test": 0}
    card = (tmp_path / "out" / "data_card.md").read_text()
    assert "| exact duplicates removed | 5 |" in card
    assert "| whitespace/comment-normalised duplicates removed | 10 |" in card
    assert "6 in 3 groups" in card and "leakage" in card
    removed = [json.loads(x) for x in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()]
    assert Counter(r["reason"] for r in removed) == {"normalised_duplicate": 10, "exact_duplicate": 5,
                                                     "conflicting_labels": 6}


def test_published_split_duplicates_are_removed_from_the_evaluation_side(tmp_path):
    d = tmp_path / "pub"
    d.mkdir()
    train = [{"func": _f(i), "target": i % 2, "idx": i} for i in range(20)]
    test = [{"func": _f(100 + i), "target": i % 2, "idx": 100 + i} for i in range(5)]
    test += [{"func": _f(3) + "/* leaked */", "target": 1, "idx": 200}]
    valid = [{"func": _f(300 + i), "target": i % 2, "idx": 300 + i} for i in range(5)]
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest(str(d), str(tmp_path / "out"), DataConfig())
    assert report["counts"] == {"train": 20, "valid": 5, "test": 5}
    assert "200" not in {s.id for s in read_split(tmp_path / "out", "test")}
    assert "3" in {s.id for s in read_split(tmp_path / "out", "train")}
    assert hygiene.leakage({s: read_split(tmp_path / "out", s) for s in SPLITS}) == \
           {"train/valid": 0, "train/test": 0, "valid/test": 0}


def test_dedup_can_be_switched_off(tmp_path):
    rows = [{"func": _f(i % 10), "target": (i % 10) % 2, "idx": i} for i in range(30)]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest(str(tmp_path / "x.jsonl"), str(tmp_path / "out"), DataConfig(dedup=False))
    assert sum(report["counts"].values()) == 30 and report["hygiene"] == {"skipped": True, "kept": 30}


def test_length_stats_and_truncated_share():
    samples = [Sample(str(i), "int f(void) { return 0; }" + " x;" * (10 * i), 0) for i in range(10)]
    stats = hygiene.length_stats(samples, max_tokens=50)
    assert stats["min"] == 10 and stats["max"] == 10 + 2 * 90
    assert stats["n_truncated"] == 7 and stats["share_truncated"] == pytest.approx(0.7)
    assert hygiene.count_tokens("a /* b c d */ + // e f\n c") == 3


# ----------------------------------------------------------------------------- splits


def _samples(n_projects=6, per=20, dated=True, pairs=True):
    out = []
    k = 0
    for p in range(n_projects):
        for j in range(per):
            pid = f"pair{k // 2}" if pairs and j < 6 else None
            d = k // 2 if pid else k  # the two functions of a pair come from one commit
            out.append(Sample(str(k), _f(k), k % 2, project=f"proj{p}", pair_id=pid,
                              date=f"20{10 + (d * 7) % 13:02d}-0{1 + d % 9}-01" if dated else None))
            k += 1
    return out


def _pairs_together(samples, idx):
    where = {}
    for split, ids in idx.items():
        for i in ids:
            if samples[i].pair_id:
                where.setdefault(samples[i].pair_id, set()).add(split)
    return where and all(len(v) == 1 for v in where.values())


def _covers_all(samples, idx):
    flat = sorted(i for ids in idx.values() for i in ids)
    return flat == list(range(len(samples)))


def test_random_split_invariants_and_tiny_inputs():
    s = _samples()
    strategy, idx = make_split(s, "auto", [0.8, 0.1, 0.1], 3)
    assert strategy == "random" and _covers_all(s, idx) and _pairs_together(s, idx)
    assert [len(idx[x]) for x in SPLITS] == [96, 12, 12]
    tiny = [Sample(str(i), _f(i), i % 2) for i in range(4)]
    idx = random_split(tiny, [0.8, 0.1, 0.1], 0)
    assert all(idx[x] for x in SPLITS) and _covers_all(tiny, idx)


def test_project_split_keeps_projects_and_pairs_apart():
    s = _samples()
    strategy, idx = make_split(s, "project", [0.6, 0.2, 0.2], 1)
    assert strategy == "project" and _covers_all(s, idx) and _pairs_together(s, idx)
    projects = {x: {s[i].project for i in idx[x]} for x in SPLITS}
    assert all(projects[x] for x in SPLITS)
    assert not (projects["train"] & projects["valid"]) and not (projects["train"] & projects["test"]) \
        and not (projects["valid"] & projects["test"])
    with pytest.raises(UserError, match="at least 3 projects"):
        make_split(_samples(n_projects=2), "project", [0.8, 0.1, 0.1], 0)


def test_time_split_orders_by_date_or_input_order():
    s = _samples()
    strategy, idx = make_split(s, "time", [0.7, 0.15, 0.15], 0)
    assert _covers_all(s, idx) and _pairs_together(s, idx)
    latest = lambda x: max(s[i].date for i in idx[x])  # noqa: E731
    earliest = lambda x: min(s[i].date for i in idx[x])  # noqa: E731
    assert latest("train") <= earliest("valid") and latest("valid") <= earliest("test")
    undated = _samples(dated=False)
    _, idx = make_split(undated, "time", [0.7, 0.15, 0.15], 0)
    assert max(idx["train"]) < min(idx["valid"]) and max(idx["valid"]) < min(idx["test"])
    mixed = _samples()
    mixed[5].date = None
    with pytest.raises(UserError, match="1 of 120 samples have no date"):
        make_split(mixed, "time", [0.7, 0.15, 0.15], 0)


def test_bad_strategy_and_fractions_are_user_errors():
    s = _samples()
    with pytest.raises(UserError, match="split_strategy"):
        make_split(s, "by-moon-phase", [0.8, 0.1, 0.1], 0)
    with pytest.raises(UserError, match="split_fractions"):
        make_split(s, "random", [0.8, 0.2], 0)


def test_ingest_with_project_and_time_strategies(tmp_path):
    s = _samples()
    (tmp_path / "x.jsonl").write_text("".join(
        json.dumps({"func": x.func, "target": x.target, "idx": int(x.id), "project": x.project,
                    "pair_id": x.pair_id, "date": x.date}) + "\n" for x in s))
    for strategy in ("project", "time"):
        out = tmp_path / strategy
        report = ingest(str(tmp_path / "x.jsonl"), str(out), DataConfig(split_strategy=strategy))
        assert report["split_strategy"] == strategy and sum(report["counts"].values()) == 120
        got = {sp: read_split(out, sp) for sp in SPLITS}
        assert all(got.values())
        if strategy == "project":
            assert not ({x.project for x in got["train"]} & {x.project for x in got["test"]})
        else:
            assert max(x.date for x in got["train"]) <= min(x.date for x in got["test"])


@pytest.mark.parametrize("code, expected", [
    ("int f(void) { return 1; }", "int f(void) { return 1; }"),  # nothing to strip: unchanged
    ("int f(int a, /* len */ int b) {", "int f(int a, int b) {"),  # a comment and its blanks: one space
    ("x = a/**/b;", "x = a b;"),  # never glues two tokens together
    ("  if (t) /* \"?\" operator */\n  z;", "  if (t)\n  z;"),  # trailing comment: no trailing blanks
    ("{\n  // only a comment\n  y;\n\n}", "{\n  y;\n\n}"),  # its line goes; a blank line of the code stays
    ("  /* two\n     lines */ y = 1;", "  y = 1;"),  # indentation kept
    ('s = "/* not a comment */"; c = \'/\'; // gone', 's = "/* not a comment */"; c = \'/\';'),
])
def test_strip_comments_keeps_the_code_and_its_layout(code, expected):
    assert hygiene.strip_comments(code) == expected
    assert hygiene.tokens(hygiene.strip_comments(code)) == hygiene.tokens(code)  # the C tokens are untouched
