"""The data check on a hand-made set: identical pairs, truncated and conflicting samples per view, in ingest's data
card and report, with a warning naming the setting that fixes it."""

from __future__ import annotations

import json

from streamguard.config import DataConfig
from streamguard.data import views
from streamguard.data.hygiene import tokens
from streamguard.data.ingest import ingest
from streamguard.data.samples import Sample
from streamguard.models.windowing import Windowing

HEAD = "int f(int *p, int n) {\n" + "".join(f"  n = n + {k};\n" for k in range(10))  # 71 lexical tokens


def _pairs() -> list[Sample]:
    """4 pairs: A differs only in a comment, B only after the first 83 lexical tokens, C at once, D early on;
    and two unpaired samples with the same code and opposite labels (a conflict)."""
    tail_b = ("  *p = n;\n  return n;\n}", "  if (p) *p = n;\n  return n;\n}")
    rows = [("A", 1, HEAD + "  *p = n; return n;\n}"), ("A", 0, HEAD + "  *p = n; /* checked */ return n;\n}"),
            ("B", 1, HEAD + "  n = n - 1;\n  n = n - 2;\n" + tail_b[0]),
            ("B", 0, HEAD + "  n = n - 1;\n  n = n - 2;\n" + tail_b[1]),
            ("C", 1, "int g(char *s) { return s[0]; }"), ("C", 0, "int g(char *s) { return s ? s[0] : 0; }"),
            ("D", 1, "int h(int x) { return 10 / x; }"), ("D", 0, "int h(int x) { return x ? 10 / x : 0; }")]
    out = [Sample(id=f"{p}{t}", func=f, target=t, pair_id=p) for p, t, f in rows]
    out += [Sample(id="u1", func="int k(void) { return 1; }", target=1),
            Sample(id="u0", func="int k(void) { return 1; }", target=0)]
    return out


def test_view_stats_count_identical_pairs_truncated_and_conflicting_samples():
    samples = _pairs()
    assert len(tokens(HEAD)) == 71 and len(tokens(samples[2].func)) == 92
    lexical = views.lexical_view(samples)
    lex = views.view_stats(lexical, samples)
    assert (lex["pairs"], lex["identical_pairs"], lex["truncated"]) == (4, 1, 0)  # A: only a comment differs
    assert lex["conflicting"] == 4 and lex["conflicting_share"] == 0.4  # A's two sides and u0/u1
    cut = views.view_stats(views.lexical_budget_view(samples, budget=75), samples, lexical)
    assert (cut["identical_pairs"], cut["identical_pair_share"]) == (2, 0.5)  # A and B
    assert cut["identical_pairs_lexical"] == 1 and cut["truncated"] == 4 and cut["truncated_share"] == 0.4
    assert cut["conflicting"] == 6
    whole = views.view_stats(views.lexical_budget_view(samples, budget=1000), samples, lexical)
    assert whole["identical_pairs"] == 1 and whole["truncated"] == 0
    w = views.warnings([lex, cut], max_share=0.3)
    assert len(w) == 1 and w[0].startswith("transformer_estimate: 2 of 4 pairs (50.0%) are identical inputs")
    assert "raise transformer.max_windows (only 1 of them are identical lexically)" in w[0]
    w = views.warnings([lex, cut], max_share=0.2)
    assert len(w) == 2 and "lexical: 1 of 4 pairs" in w[0] and "no setting separates them" in w[0]
    assert views.warnings([lex, cut], max_share=0.5) == []


def test_combined_view_is_identical_only_where_every_part_is():
    samples = _pairs()
    a = views.lexical_budget_view(samples, 75)
    b = views.lexical_view(samples)
    both = views.view_stats(views.combine("fusion", a, b), samples)
    assert both["identical_pairs"] == 1 and both["truncated"] == 4


def test_ingest_writes_the_shares_into_the_data_card_and_report(tmp_path):
    rows = [{"idx": s.id, "func": s.func, "target": s.target, **({"pair_id": s.pair_id} if s.pair_id else {})}
            for s in _pairs()]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    win = Windowing(window=39, stride=37, max_windows=2)  # 74 content tokens
    report = ingest(str(tmp_path / "d.jsonl"), str(tmp_path / "out"),
                    DataConfig(dedup=False, split_fractions=[1.0, 0.0, 0.0], max_identical_view_share=0.3),
                    windowing=win)
    kept = {st["view"]: st for st in report["views"]["kept"]}
    assert kept["lexical"]["identical_pairs"] == 1 and kept["transformer_estimate"]["identical_pairs"] == 2
    assert kept["transformer_estimate"]["truncated_share"] == 0.4 and report["views"]["token_budget"] == 74
    assert any("transformer.max_windows" in w for w in report["warnings"])
    card = (tmp_path / "out" / "data_card.md").read_text()
    assert "| transformer_estimate | 4 | 2 (50.0%) | 4 (40.0%) | 6 (60.0%) | transformer.max_windows |" in card
    assert "| lexical | 4 | 1 (25.0%) | 0 (0.0%) | 4 (40.0%) |" in card
    assert "As read, before cleaning: 1 of 4 pairs identical lexically (25.0%), 2 in the transformer estimate" in card
