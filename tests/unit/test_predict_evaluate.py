"""predict (any input ingest reads, bad rows quarantined) and evaluate (hygiene, training overlap, pair metrics)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from streamguard.bundle import load_bundle
from streamguard.data.samples import Sample, read_split
from streamguard.errors import UserError
from streamguard.eval.metrics import compute_metrics
from streamguard.evaluate import dataset_name, evaluate, evaluate_external
from streamguard.predict import predict


@pytest.fixture(scope="module")
def bundle(trained):
    return load_bundle(trained.bundle)


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


FUNCS = [
    "int add(int a, int b) { return a + b; }",
    "void copy(char *d, const char *s) { strcpy(d, s); }",
    "int get(int *a, int i) { if (i < 0 || i >= 8) return -1; return a[i]; }",
    "void zero(char *p, int n) { memset(p, 0, n + 1); }",
]


def test_predict_scores_labelled_and_unlabelled_rows_and_quarantines_bad_ones(bundle, tmp_path):
    src = _jsonl(tmp_path / "new.jsonl", [
        {"idx": 1, "func": FUNCS[0], "target": 0},
        {"idx": 2, "func": FUNCS[1]},  # nobody knows its label yet
        {"idx": 3, "func": FUNCS[2], "target": "maybe"},  # bad label
        "{not json",
        {"idx": 5, "func": "   ", "target": 1},  # empty function
        {"idx": 6, "func": FUNCS[3], "target": 1},
    ])
    report = predict(bundle, str(src), tmp_path / "out", progress=False)
    assert (report["rows"], report["scored"], report["quarantined"], report["labelled"]) == (6, 3, 3, 2)
    assert report["bad_rows"] == {"bad_label": 1, "empty_func": 1, "malformed_json": 1}
    quarantine = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(q["line"] for q in quarantine) == [3, 4, 5] and all(q["reason"] and q["source"] for q in quarantine)
    rows = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in rows] == [1, 2, 6]
    assert [r.get("target") for r in rows] == [0, None, 1]
    want = bundle.score([Sample(str(i), f, 0) for i, f in zip((1, 2, 6), (FUNCS[0], FUNCS[1], FUNCS[3]))],
                        progress=False)
    for k, r in enumerate(rows):
        assert r["prob"] == r["prob_fusion"] == round(float(want["fusion"][k]), 6)
        for fam in bundle.families:
            assert r[f"prob_{fam}"] == round(float(want[fam][k]), 6)
            assert r[f"label_{fam}"] == int(want[fam][k] >= bundle.thresholds[fam])
        assert r["label"] == r["label_fusion"]


def test_predict_reads_an_ingested_directory_split_by_split(bundle, trained, tmp_path):
    report = predict(bundle, str(trained.data), tmp_path / "all", progress=False)
    n = sum(len(read_split(trained.data, s)) for s in ("train", "valid", "test"))
    assert report["scored"] == n and report["format"] == "ingested" and report["labelled"] == n
    test = predict(bundle, str(trained.data), tmp_path / "test", split="test", progress=False)
    assert test["scored"] == len(read_split(trained.data, "test"))


def test_predict_reads_functions_nobody_has_labelled(bundle, tmp_path):
    src = _jsonl(tmp_path / "unlabelled.jsonl", [{"func": f} for f in FUNCS])
    report = predict(bundle, str(src), tmp_path / "out", progress=False)
    assert (report["scored"], report["labelled"], report["quarantined"]) == (4, 0, 0)


def test_predict_with_nothing_valid_is_one_line_exit_2(trained, tmp_path):
    src = _jsonl(tmp_path / "bad.jsonl", ['{"func": 3, "target": 1}', "[1, 2]"])
    res = subprocess.run([sys.executable, "-m", "streamguard", "predict", "--bundle", str(trained.bundle), "--input",
                          str(src), "--output", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and "no valid functions (2 of 2 rows quarantined" in res.stderr
    assert "Traceback" not in res.stderr


def _pairs_dataset(path, trained):
    """Four vulnerable/fixed pairs, two unpaired functions, a bad row, and one function of the training split."""
    rows = []
    bodies = [("strcpy(buf, s);", "strncpy(buf, s, sizeof(buf) - 1);"),
              ("memcpy(out, in, n);", "if (n > cap) return -1; memcpy(out, in, n);"),
              ("return a[i];", "if (i < 0 || i >= len) return -1; return a[i];"),
              ("free(p); use(p);", "free(p); p = NULL;")]
    for k, (bad, good) in enumerate(bodies):
        rows.append({"idx": f"v{k}", "func": f"int pair{k}(char *s, int i) {{ char buf[8]; {bad} return 0; }}",
                     "target": 1, "pair_id": f"p{k}"})
        rows.append({"idx": f"f{k}", "func": f"int pair{k}(char *s, int i) {{ char buf[8]; {good} return 0; }}",
                     "target": 0, "pair_id": f"p{k}"})
    rows.append({"idx": "u1", "func": "int lone(void) { return 1; }", "target": 0})
    rows.append({"idx": "u2", "func": "void bad(char *p) { gets(p); }", "target": 1})
    rows.append({"idx": "x", "func": "int broken(", "target": 7})
    seen = read_split(trained.data, "train")[0]
    rows.append({"idx": "seen", "func": seen.func, "target": seen.target})
    return _jsonl(path, rows)


@pytest.fixture
def cfg(trained):
    """The training config, with room for the one bad row of 12 in the pairs dataset."""
    cfg = copy.deepcopy(trained.cfg)
    cfg.data.max_bad_share = 0.2
    return cfg


def test_evaluate_reports_every_metric_and_pair_metrics_as_counted_by_hand(bundle, trained, cfg, tmp_path):
    data = _pairs_dataset(tmp_path / "pairs.jsonl", trained)
    r = evaluate(bundle, str(data), tmp_path / "ev", cfg, progress=False)
    c = r["counts"]
    assert (c["rows_read"], c["quarantined"], c["functions"], c["training_overlap"], c["evaluated"], c["pairs"]) == \
        (12, 1, 11, 1, 10, 4)
    assert r["name"] == "pairs"
    for fam in bundle.families:
        rows = [json.loads(x) for x in (tmp_path / "ev" / "predictions" / f"{fam}.jsonl").read_text().splitlines()]
        assert "seen" not in {str(x["idx"]) for x in rows} and len(rows) == 10
        thr = bundle.thresholds[fam]
        # by hand: each pair's (prediction on the vulnerable one, on the fixed one)
        by_pair = {}
        for x in rows:
            if "pair_id" in x:
                by_pair.setdefault(x["pair_id"], {})[x["label"]] = int(x["prob"] >= thr)
        both = [(v[1], v[0]) for v in by_pair.values()]
        hand = {"pair_correct": both.count((1, 0)) / 4, "pair_vulnerable": both.count((1, 1)) / 4,
                "pair_benign": both.count((0, 0)) / 4, "pair_reversed": both.count((0, 1)) / 4}
        m = r["metrics"][fam]
        assert m["pairs"] == 4 and {k: m[k] for k in hand} == hand, fam
        y = [x["label"] for x in rows]
        p = [x["prob"] for x in rows]
        assert m["f1"] == compute_metrics(y, p, thr)["f1"]
        for key in ("precision", "recall", "accuracy", "roc_auc", "pr_auc", "brier", "ece", "tpr_at_fpr_0.5pct",
                    "tpr_at_fpr_1pct", "vd_s"):
            assert key in m, key
    md = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "| fusion |" in md and "P-C" in md and "10 evaluated" in md
    on_disk = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert on_disk["metrics"]["fusion"]["pair_correct"] == r["metrics"]["fusion"]["pair_correct"]
    # the probabilities are the bundle's
    kept = [s for s in read_split(tmp_path / "ev" / "data", "train") + read_split(tmp_path / "ev" / "data", "valid")
            + read_split(tmp_path / "ev" / "data", "test") if s.id != "seen"]
    scores = bundle.score(kept, progress=False)["fusion"]
    fusion = {str(json.loads(x)["idx"]): json.loads(x)["prob"]
              for x in (tmp_path / "ev" / "predictions" / "fusion.jsonl").read_text().splitlines()}
    assert [fusion[s.id] for s in kept] == [round(float(v), 6) for v in scores]


def test_evaluate_external_ingests_each_dataset_once_and_indexes_every_seed(trained, cfg, tmp_path):
    data = _pairs_dataset(tmp_path / "pairs.jsonl", trained)
    index = evaluate_external([str(trained.bundle)], [f"primevul_like={data}", str(data)], tmp_path / "ext",
                              cfg, progress=False)
    assert list(index["datasets"]) == ["primevul_like", "pairs"]
    assert index["datasets"]["pairs"] == {"uri": str(data), "seeds": {"42": "pairs/seed-42"}}
    ev = json.loads((tmp_path / "ext" / "pairs" / "seed-42" / "evaluation.json").read_text())
    assert ev["counts"]["evaluated"] == 10 and ev["bundle"]["seed"] == 42
    assert json.loads((tmp_path / "ext" / "external.json").read_text()) == index
    assert evaluate_external([str(trained.bundle)], [], tmp_path / "none", cfg) == {"datasets": {}}


def test_dataset_names():
    assert dataset_name("primevul=s3://bucket/primevul/test.jsonl") == ("primevul", "s3://bucket/primevul/test.jsonl")
    assert dataset_name("/data/primevul_test_paired.jsonl") == ("primevul_test_paired",
                                                               "/data/primevul_test_paired.jsonl")
    assert dataset_name("https://host/x/big vul.csv?raw=1") == ("big_vul", "https://host/x/big vul.csv?raw=1")


def test_evaluate_with_every_function_seen_in_training_is_one_line(bundle, trained, tmp_path):
    train = read_split(trained.data, "train")[:6]
    data = _jsonl(tmp_path / "seen.jsonl", [{"idx": s.id, "func": s.func, "target": s.target} for s in train])
    with pytest.raises(UserError, match="no functions left to evaluate .* also in the bundle's training split"):
        evaluate(bundle, str(data), tmp_path / "o", trained.cfg, progress=False)
    assert np.isfinite(bundle.thresholds["fusion"])
