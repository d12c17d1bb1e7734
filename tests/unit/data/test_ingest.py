"""ingest: validation, quarantine, the bad-row threshold, splits, report, speed."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamguard.config import DataConfig
from streamguard.data.ingest import ingest
from streamguard.data.samples import SPLITS, read_split
from streamguard.data.synthetic import write_demo_dataset
from streamguard.errors import UserError

REPO = Path(__file__).resolve().parents[3]


def _row(i, target=None, **kw):
    d = {"func": f"int f{i}(int a) {{ return a + {i}; }}\n", "target": i % 2 if target is None else target, "idx": i,
         "project": f"p{i % 3}", "commit_id": f"{i:040x}"}
    d.update(kw)
    return json.dumps(d)


def _write(path: Path, lines: list, binary: bool = False) -> Path:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


BAD = [
    b'{"func": "int x(void) { return 0; }", "target": 1, "idx": 900',  # truncated JSON
    b'{"target": 1, "idx": 901}',  # missing func
    b'{"func": "int y(void) { return 1; }", "idx": 902}',  # missing target
    b'{"func": "int z(void) { return 2; }", "target": 2, "idx": 903}',  # label outside {0,1}
    b'{"func": "   \\n", "target": 0, "idx": 904}',  # empty function
    b'{"func": "int \xff\xfe(void) { }", "target": 0, "idx": 905}',  # non-UTF-8 bytes
    b'[1, 2, 3]',  # not an object
]
REASONS = {"malformed_json", "missing_field", "bad_label", "empty_func", "non_utf8", "not_an_object"}


def test_bad_rows_are_quarantined_with_reasons_and_counted(tmp_path):
    good = [_row(i) for i in range(200)]
    src = _write(tmp_path / "in.jsonl", good[:100] + BAD + good[100:])
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    q = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert len(q) == len(BAD) == report["quarantined"]
    assert {r["reason"] for r in q} == REASONS
    assert sorted(r["line"] for r in q) == list(range(101, 101 + len(BAD)))
    assert all(r["source"] == str(src) and r["excerpt"] and r["detail"] for r in q)
    assert report["bad_rows"]["missing_field"] == 2
    assert sum(report["bad_rows"].values()) == len(BAD)
    assert sum(report["counts"].values()) == 200
    assert report["rows_read"] == 200 + len(BAD)
    on_disk = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert on_disk["fingerprint"] == report["fingerprint"] and on_disk["input"] == str(src)


def test_too_many_bad_rows_fail_with_one_line_after_writing_the_quarantine(tmp_path):
    src = _write(tmp_path / "in.jsonl", [_row(i) for i in range(60)] + BAD)
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        ingest(str(src), str(out), DataConfig())
    msg = str(e.value)
    assert "\n" not in msg and str(src) in msg and f"{len(BAD)} of {60 + len(BAD)}" in msg and "5.0%" in msg
    assert len((out / "quarantine.jsonl").read_text().splitlines()) == len(BAD)
    assert not (out / "data_report.json").exists()
    # a looser threshold lets the same file through
    report = ingest(str(src), str(out), DataConfig(max_bad_share=0.2))
    assert report["quarantined"] == len(BAD)


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    src = _write(tmp_path / "in.jsonl", [_row(i) for i in range(10)] + BAD)
    p = subprocess.run([sys.executable, "-m", "streamguard", "ingest", "--input", str(src), "--output",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "max_bad_share" in p.stderr


def test_ids_come_from_idx_or_line_numbers_and_duplicate_ids_are_quarantined(tmp_path):
    lines = [json.dumps({"func": f"int g{i}(void) {{ return {i}; }}", "target": i % 2}) for i in range(40)]
    lines.append(json.dumps({"func": "int dup(void) { return 7; }", "target": 1, "idx": 500}))
    lines.append(json.dumps({"func": "int dup2(void) { return 8; }", "target": 1, "idx": 500}))
    src = _write(tmp_path / "in.jsonl", lines)
    report = ingest(str(src), str(tmp_path / "out"), DataConfig(max_bad_share=0.1))
    ids = {s.id for split in SPLITS for s in read_split(tmp_path / "out", split)}
    assert ids == {str(i) for i in range(1, 41)} | {"500"}
    assert report["bad_rows"] == {"duplicate_id": 1}


def test_random_split_is_stratified_seeded_and_keeps_pairs(tmp_path):
    lines = [_row(i, target=int(i < 150)) for i in range(600)]  # 25% vulnerable
    lines += [_row(1000 + i, target=i % 2, pair_id=f"P{i // 2}") for i in range(100)]
    src = _write(tmp_path / "in.jsonl", lines)
    a = ingest(str(src), str(tmp_path / "a"), DataConfig(split_seed=1))
    b = ingest(str(src), str(tmp_path / "b"), DataConfig(split_seed=1))
    c = ingest(str(src), str(tmp_path / "c"), DataConfig(split_seed=2))
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert a["counts"] == {"train": 560, "valid": 70, "test": 70}
    for s in SPLITS:
        assert a["label_balance"][s]["vulnerable_share"] == pytest.approx(200 / 700, abs=0.03)
    where = {}
    for s in SPLITS:
        for x in read_split(tmp_path / "a", s):
            if x.pair_id:
                where.setdefault(x.pair_id, set()).add(s)
    assert len(where) == 50 and all(len(v) == 1 for v in where.values())
    assert sum(a["pairs"].values()) == 50


def test_empty_file_is_one_clear_error(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        ingest(str(src), str(tmp_path / "out"), DataConfig())


def test_missing_input_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        ingest(str(tmp_path / "nope.jsonl"), str(tmp_path / "out"), DataConfig())


def test_demo_dataset_ingests_fast_and_balanced(tmp_path):
    src = tmp_path / "demo.jsonl"
    write_demo_dataset(src, n=2000, seed=0)
    t = time.perf_counter()
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    elapsed = time.perf_counter() - t
    assert elapsed < 1.5  # 2,000 rows; typically ~0.3 s
    assert report["counts"] == {"train": 1600, "valid": 200, "test": 200}
    assert report["quarantined"] == 0 and report["split_strategy"] == "random"
    assert (tmp_path / "out" / "data_card.md").read_text().startswith("# Data card")
