"""The synthetic demo dataset: deterministic, balanced, parseable, and learnable only from token arrangement."""

import json
import re
from collections import Counter

import numpy as np
import pytest

from streamguard.data.synthetic import FAMILIES, generate, generate_with_families, write_demo_dataset

_TOK = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_]\w*|\d+|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\S')


def _tokens(s: str) -> list[str]:
    return _TOK.findall(s)


@pytest.fixture(scope="module")
def rows():
    return generate_with_families(2000, seed=0)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert write_demo_dataset(a, n=300, seed=4) == 300
    write_demo_dataset(b, n=300, seed=4)
    write_demo_dataset(c, n=300, seed=5)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_codexglue_fields_balance_and_no_duplicates(tmp_path):
    path = tmp_path / "demo.jsonl"
    write_demo_dataset(path, n=2000, seed=1)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    rows = [json.loads(x) for x in lines]
    assert all(set(r) == {"func", "target", "idx", "project", "commit_id"} for r in rows)
    assert [r["idx"] for r in rows] == list(range(2000))
    assert {r["target"] for r in rows} == {0, 1}
    assert 0.45 <= sum(r["target"] for r in rows) / len(rows) <= 0.55
    assert len({r["func"] for r in rows}) == len(rows)
    assert len({r["project"] for r in rows}) > 3


def test_generate_matches_the_file():
    assert [s.func for s in generate(50, seed=2)] == [s.func for s, _ in generate_with_families(50, seed=2)]


def test_at_least_ten_families_each_balanced(rows):
    assert len(FAMILIES) >= 10
    per = Counter((fam, s.target) for s, fam in rows)
    for fam in FAMILIES:
        assert per[(fam, 0)] > 60 and abs(per[(fam, 0)] - per[(fam, 1)]) <= 2, fam


def test_functions_are_short_and_parse_without_errors(rows):
    lens = np.array([len(_tokens(s.func)) for s, _ in rows])
    assert np.percentile(lens, 95) < 200 and lens.max() < 260
    import tree_sitter as ts
    import tree_sitter_c as tsc

    parser = ts.Parser(ts.Language(tsc.language()))
    bad = [s.id for s, _ in rows if parser.parse(s.func.encode()).root_node.has_error]
    assert not bad


def _best_single_token_accuracy(present: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the best rule 'label = (token present)' or 'label = (token absent)'."""
    acc = (present == y[:, None].astype(bool)).mean(axis=0)
    return float(np.maximum(acc, 1 - acc).max())


def test_no_single_token_separates_the_classes(rows):
    from sklearn.feature_extraction.text import CountVectorizer

    funcs = [s.func for s, _ in rows]
    y = np.array([s.target for s, _ in rows])
    fams = np.array([f for _, f in rows])
    present = CountVectorizer(tokenizer=_tokens, lowercase=False, binary=True, token_pattern=None) \
        .fit_transform(funcs).toarray().astype(bool)
    assert _best_single_token_accuracy(present, y) < 0.65
    for fam in FAMILIES:  # not even inside one family
        m = fams == fam
        assert _best_single_token_accuracy(present[m], y[m]) < 0.8, fam


def test_ngrams_learn_it_and_a_bag_of_words_does_not(rows):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    funcs = [s.func for s, _ in rows]
    y = np.array([s.target for s, _ in rows])

    def heldout_f1(ngram_range):
        vec = CountVectorizer(tokenizer=_tokens, lowercase=False, binary=True, token_pattern=None, min_df=2,
                              ngram_range=ngram_range)
        clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(funcs[:1600]), y[:1600])
        return f1_score(y[1600:], clf.predict(vec.transform(funcs[1600:])))

    assert heldout_f1((1, 3)) >= 0.8
    assert heldout_f1((1, 1)) < 0.7
