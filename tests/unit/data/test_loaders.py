"""Loaders: each format's field mapping, pairs, the published split, remote inputs, bad whole inputs."""

import csv
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from streamguard.config import DataConfig
from streamguard.data.ingest import ingest
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError


def _func(i: int) -> str:
    return f"int fn_{i}(int a)\n{{\n    return a * {i};\n}}\n"


def _all(out: Path) -> dict:
    return {s.id: (split, s) for split in SPLITS for s in read_split(out, split)}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- CodeXGLUE / Devign


def test_codexglue_index_files_reproduce_the_published_split(tmp_path):
    d = tmp_path / "cxg"
    d.mkdir()
    funcs = [{"project": "FFmpeg" if i % 2 else "qemu", "commit_id": f"c{i}", "target": i % 2, "func": _func(i)}
             for i in range(30)]
    (d / "function.json").write_text(json.dumps(funcs))
    (d / "train.txt").write_text("".join(f"{i}\n" for i in range(0, 20)))
    (d / "valid.txt").write_text("".join(f"{i}\n" for i in range(20, 24)))
    (d / "test.txt").write_text("".join(f"{i}\n" for i in range(24, 29)))  # 29 is in no index file
    report = ingest(str(d), str(tmp_path / "out"), DataConfig())
    assert report["format"] == "devign" and report["split_strategy"] == "published"
    got = _all(tmp_path / "out")
    assert sorted(int(i) for i, (s, _) in got.items() if s == "train") == list(range(20))
    assert sorted(int(i) for i, (s, _) in got.items() if s == "valid") == list(range(20, 24))
    assert sorted(int(i) for i, (s, _) in got.items() if s == "test") == list(range(24, 29))
    assert report["unassigned"] == 1 and report["removed"] == {"not_in_published_split": 1}
    s = got["7"][1]
    assert (s.func, s.target, s.project, s.commit_id) == (_func(7), 1, "FFmpeg", "c7")


def test_codexglue_split_files_and_jsonl_with_index_files(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    for k, split in enumerate(SPLITS):
        _jsonl(d / f"{split}.jsonl", [{"func": _func(100 * k + i), "target": i % 2, "idx": 100 * k + i}
                                      for i in range(10)])
    report = ingest(str(d), str(tmp_path / "o1"), DataConfig())
    assert report["split_strategy"] == "published" and report["counts"] == {"train": 10, "valid": 10, "test": 10}
    assert all(int(i) // 100 == SPLITS.index(s) for i, (s, _) in _all(tmp_path / "o1").items())

    d2 = tmp_path / "indexed"
    d2.mkdir()
    _jsonl(d2 / "data.jsonl", [{"func": _func(i), "target": i % 2, "idx": 50 + i} for i in range(12)])
    (d2 / "train.txt").write_text("50\n51\n52\n53\n54\n55\n56\n57\n")
    (d2 / "valid.txt").write_text("58\n59\n")
    (d2 / "test.txt").write_text("60\n61\n")
    report = ingest(str(d2), str(tmp_path / "o2"), DataConfig())
    assert report["counts"] == {"train": 8, "valid": 2, "test": 2} and report["format"] == "codexglue"
    # the published split can be overridden by another strategy
    report = ingest(str(d2), str(tmp_path / "o3"), DataConfig(split_strategy="random"))
    assert report["split_strategy"] == "random"


def test_published_strategy_without_a_published_split_is_an_error(tmp_path):
    src = _jsonl(tmp_path / "x.jsonl", [{"func": _func(i), "target": i % 2} for i in range(10)])
    with pytest.raises(UserError, match="no published split"):
        ingest(str(src), str(tmp_path / "out"), DataConfig(split_strategy="published"))


# ----------------------------------------------------------------------------- BigVul


BIGVUL_COLS = ["", "CVE ID", "CWE ID", "Publish Date", "commit_id", "project", "func_after", "func_before",
               "lang", "vul"]


def _bigvul(path: Path, rows: list[dict], cols=BIGVUL_COLS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _bigvul_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        vul = int(i % 3 == 0)
        before = _func(i) + ("/* \"quoted\", comma */\n" if i == 3 else "")
        rows.append({"": str(i), "CVE ID": f"CVE-2020-{1000 + i}" if vul else "", "CWE ID": "CWE-119" if vul else "",
                     "Publish Date": f"2020-01-{1 + i % 28:02d}", "commit_id": f"{i:08x}", "project": f"proj{i % 4}",
                     "func_before": before, "func_after": before.replace("a *", "a +") if vul else before,
                     "lang": "C", "vul": str(vul)})
    return rows


def test_bigvul_csv_mapping_and_fixed_versions_as_pairs(tmp_path):
    src = _bigvul(tmp_path / "MSR_data_cleaned.csv", _bigvul_rows(60))
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    assert report["format"] == "bigvul"
    got = _all(tmp_path / "out")
    assert len(got) == 60 + 20  # 20 vulnerable rows, each with its fixed version
    split3, before = got["3"]
    split3f, after = got["3-fixed"]
    assert (before.target, after.target) == (1, 0) and split3 == split3f
    assert before.pair_id == after.pair_id == "bigvul-3"
    assert (before.cve, before.cwe, before.project, before.commit_id, before.date) == \
           ("CVE-2020-1003", "CWE-119", "proj3", "00000003", "2020-01-04")
    assert "quoted" in before.func and "a + 3" in after.func
    assert got["4"][1].target == 0 and got["4"][1].pair_id is None and got["4"][1].cve is None
    assert sum(report["pairs"].values()) == 20


def test_bigvul_csv_missing_a_required_column_is_one_clear_error(tmp_path):
    cols = [c for c in BIGVUL_COLS if c != "func_before"]
    src = _bigvul(tmp_path / "bv.csv", _bigvul_rows(5), cols)
    with pytest.raises(UserError, match="missing required column 'func_before'") as e:
        ingest(str(src), str(tmp_path / "out"), DataConfig())
    assert "\n" not in str(e.value)


def test_bigvul_non_utf8_row_is_quarantined(tmp_path):
    src = _bigvul(tmp_path / "bv.csv", _bigvul_rows(40))
    data = src.read_bytes().replace(b"fn_5(", b"fn_\xff5(")
    src.write_bytes(data)
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    assert report["bad_rows"] == {"non_utf8": 1}
    q = json.loads((tmp_path / "out" / "quarantine.jsonl").read_text())
    assert q["source"] == str(src) and q["line"] > 1


# ----------------------------------------------------------------------------- DiverseVul, PrimeVul


def test_diversevul_detected_and_mapped(tmp_path):
    rows = [{"func": _func(i), "target": i % 2, "cwe": ["CWE-787", "CWE-125"] if i % 2 else [], "project": "openssl",
             "commit_id": f"{i:06x}", "hash": 1000 + i, "size": 4, "message": "fix"} for i in range(20)]
    src = _jsonl(tmp_path / "diversevul_20230702.json", rows)
    report = ingest(str(src), str(tmp_path / "out"), DataConfig())
    assert report["format"] == "diversevul"
    s = _all(tmp_path / "out")["2"][1]  # ids are line numbers: line 2 is rows[1]
    assert (s.target, s.cwe, s.project, s.commit_id) == (1, "CWE-787,CWE-125", "openssl", "000001")
    assert _all(tmp_path / "out")["1"][1].cwe is None


def _primevul_row(idx, target, func, commit):
    return {"idx": idx, "project": "linux", "commit_id": commit, "project_url": "u", "commit_url": "u",
            "commit_message": "m", "target": target, "func": func, "func_hash": str(hash(func)), "file_name": "a.c",
            "file_hash": "h", "cwe": ["CWE-416"] if target else [], "cve": "CVE-2021-1" if target else "None",
            "cve_desc": "d", "nvd_url": "u"}


def test_primevul_split_files_and_paired_files(tmp_path):
    d = tmp_path / "primevul"
    d.mkdir()
    idx = 0
    for split in SPLITS:
        rows, paired = [], []
        for i in range(8):
            rows.append(_primevul_row(idx, i % 2, _func(idx), f"c{idx}"))
            idx += 1
        for _ in range(3):  # vulnerable function, then its fix
            paired.append(_primevul_row(idx, 1, _func(idx), f"p{idx}"))
            paired.append(_primevul_row(idx + 1, 0, _func(idx) + "/* fixed */ int fixed;\n", f"p{idx}"))
            idx += 2
        _jsonl(d / f"primevul_{split}.jsonl", rows)
        _jsonl(d / f"primevul_{split}_paired.jsonl", paired)
    report = ingest(str(d), str(tmp_path / "out"), DataConfig())
    assert report["format"] == "primevul" and report["split_strategy"] == "published"
    assert report["counts"] == {"train": 14, "valid": 14, "test": 14}
    assert report["pairs"] == {"train": 3, "valid": 3, "test": 3}
    got = _all(tmp_path / "out")
    s = got["0"][1]
    assert (s.cwe, s.project, s.commit_id) == (None, "linux", "c0") and got["1"][1].cwe == "CWE-416"
    pairs = {}
    for split, x in got.values():
        if x.pair_id:
            pairs.setdefault(x.pair_id, []).append((split, x.target))
    assert all(len(v) == 2 and {t for _, t in v} == {0, 1} and len({s for s, _ in v}) == 1 for v in pairs.values())


# ----------------------------------------------------------------------------- formats and bad inputs


def test_unknown_format_name_and_undetectable_file_are_one_clear_error(tmp_path):
    src = _jsonl(tmp_path / "x.jsonl", [{"func": _func(i), "target": 0} for i in range(3)])
    with pytest.raises(UserError, match="unknown format"):
        ingest(str(src), str(tmp_path / "out"), DataConfig(), fmt="parquet")
    other = _jsonl(tmp_path / "y.jsonl", [{"code": "x", "label": 1}])
    with pytest.raises(UserError, match="cannot detect the format"):
        ingest(str(other), str(tmp_path / "out"), DataConfig())


def test_named_format_overrides_detection(tmp_path):
    rows = [{"func": _func(i), "target": i % 2, "hash": i, "size": 1, "idx": 90 + i} for i in range(10)]
    src = _jsonl(tmp_path / "x.jsonl", rows)
    assert ingest(str(src), str(tmp_path / "a"), DataConfig())["format"] == "diversevul"
    report = ingest(str(src), str(tmp_path / "b"), DataConfig(), fmt="codexglue")
    assert report["format"] == "codexglue" and "90" in _all(tmp_path / "b")  # codexglue takes ids from idx


def test_a_50mb_single_function_is_quarantined_and_fails_with_one_line(tmp_path):
    src = tmp_path / "huge.jsonl"
    body = "x = x + 1;\n" * (50 * 1024 * 1024 // 11)
    src.write_text(json.dumps({"func": "void f(void) {\n" + body + "}\n", "target": 1, "idx": 0}) + "\n")
    with pytest.raises(UserError, match="1 of 1 rows are bad") as e:
        ingest(str(src), str(tmp_path / "out"), DataConfig())
    assert "too_long=1" in str(e.value)
    q = json.loads((tmp_path / "out" / "quarantine.jsonl").read_text())
    assert q["reason"] == "too_long" and len(q["excerpt"]) <= 200


def test_json_lone_surrogate_is_quarantined_as_non_utf8(tmp_path):
    rows = [json.dumps({"func": _func(i), "target": i % 2}) for i in range(30)]
    rows.append('{"func": "int a(void) { return \'\\ud800\'; }", "target": 1}')
    (tmp_path / "x.jsonl").write_text("\n".join(rows) + "\n")
    report = ingest(str(tmp_path / "x.jsonl"), str(tmp_path / "out"), DataConfig(max_bad_share=0.1))
    assert report["bad_rows"] == {"non_utf8": 1}


# ----------------------------------------------------------------------------- remote inputs


@pytest.fixture
def http_dir(tmp_path):
    """A local http.server on 127.0.0.1 serving a temporary directory."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_url_is_read_and_a_404_is_one_clear_error(http_dir, tmp_path):
    root, base = http_dir
    _jsonl(root / "data.jsonl", [{"func": _func(i), "target": i % 2, "idx": i} for i in range(20)])
    report = ingest(f"{base}/data.jsonl", str(tmp_path / "out"), DataConfig())
    assert sum(report["counts"].values()) == 20 and report["input"] == f"{base}/data.jsonl"
    with pytest.raises(UserError, match="HTTP 404") as e:
        ingest(f"{base}/missing.jsonl", str(tmp_path / "out2"), DataConfig())
    assert "\n" not in str(e.value)


def test_s3_object_and_prefix_are_read(s3_store, tmp_path):
    rows = [{"func": _func(i), "target": i % 2, "idx": i} for i in range(20)]
    s3_store.put_bytes("ds/demo.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    uri = f"s3://{s3_store.bucket}/prefix/ds/demo.jsonl"
    report = ingest(uri, str(tmp_path / "out"), DataConfig())
    assert sum(report["counts"].values()) == 20 and report["quarantined"] == 0
    for k, split in enumerate(SPLITS):
        s3_store.put_bytes(f"pre/{split}.jsonl", json.dumps({"func": _func(100 + k), "target": 1, "idx": k}).encode())
    report = ingest(f"s3://{s3_store.bucket}/prefix/pre", str(tmp_path / "out2"), DataConfig())
    assert report["counts"] == {"train": 1, "valid": 1, "test": 1}
    with pytest.raises(UserError, match="no such object"):
        ingest(f"s3://{s3_store.bucket}/prefix/nothing.jsonl", str(tmp_path / "out3"), DataConfig())
