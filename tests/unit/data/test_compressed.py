"""Compressed inputs: .jsonl.gz, .json.gz, .csv.gz (and .zst when zstandard is installed), as a file, inside a
directory, by URL and from s3://, with the BOM/CRLF/UTF-16 rules of plain files; a corrupt archive is one line."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
from test_loaders import http_dir  # noqa: F401  (the fixture: a local http.server)

from streamguard.config import DataConfig
from streamguard.data.ingest import ingest
from streamguard.data.loaders import load
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError


def _func(i: int) -> str:
    return f"int f{i}(int x) {{ return x + {i}; }}"


def _rows(n: int = 40) -> list[dict]:
    return [{"idx": i, "func": _func(i), "target": i % 2, "project": f"p{i % 3}"} for i in range(n)]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _funcs(out) -> list[str]:
    return sorted(s.func for sp in SPLITS for s in read_split(out, sp))


def test_jsonl_gz_ingests_like_the_plain_file(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(_jsonl(_rows()))
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(_jsonl(_rows())))
    plain = ingest(str(tmp_path / "d.jsonl"), str(tmp_path / "a"), DataConfig())
    packed = ingest(str(tmp_path / "d.jsonl.gz"), str(tmp_path / "b"), DataConfig())
    assert packed["fingerprint"] == plain["fingerprint"] and packed["format"] == "codexglue"
    assert packed["files"] == [str(tmp_path / "d.jsonl.gz")]
    assert _funcs(tmp_path / "b") == _funcs(tmp_path / "a")


def test_json_array_gz_and_bigvul_csv_gz(tmp_path):
    arr = [{"project": "p", "commit_id": "c", "target": i % 2, "func": _func(i)} for i in range(30)]
    (tmp_path / "function.json.gz").write_bytes(gzip.compress(json.dumps(arr).encode()))
    got = load(tmp_path / "function.json.gz", "auto")
    assert got.format == "devign" and len(got.rows) == 30 and got.rows[3].data["func"] == _func(3)
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["", "func_before", "func_after", "vul", "project"])
    w.writeheader()
    for i in range(10):
        w.writerow({"": i, "func_before": _func(i), "func_after": _func(i) + " ", "vul": i % 2, "project": "p"})
    (tmp_path / "bigvul.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    got = load(tmp_path / "bigvul.csv.gz", "auto")
    assert got.format == "bigvul" and len(got.rows) == 15  # 5 vulnerable rows with a fixed version: pairs


def test_bom_and_crlf_inside_gz_and_utf16_inside_gz_is_one_line(tmp_path):
    text = b"\xef\xbb\xbf" + _jsonl(_rows(10)).replace(b"\n", b"\r\n")
    (tmp_path / "bom.jsonl.gz").write_bytes(gzip.compress(text))
    got = load(tmp_path / "bom.jsonl.gz", "auto")
    assert len(got.rows) == 10 and all(r.error is None for r in got.rows) and got.rows[0].data["id"] == "0"
    (tmp_path / "wide.jsonl.gz").write_bytes(gzip.compress(_jsonl(_rows(5)).decode().encode("utf-16")))
    with pytest.raises(UserError) as e:
        load(tmp_path / "wide.jsonl.gz", "auto")
    assert str(e.value).startswith(f"{tmp_path / 'wide.jsonl.gz'}: file is encoded as UTF-16")
    assert "sg-unpack" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["not_gzip", "truncated"])
def test_a_corrupt_archive_is_one_line_naming_the_file(tmp_path, damage):
    blob = gzip.compress(_jsonl(_rows(200)))
    (tmp_path / "bad.jsonl.gz").write_bytes(b"plain text, not gzip" if damage == "not_gzip" else blob[:len(blob) // 2])
    with pytest.raises(UserError) as e:
        ingest(str(tmp_path / "bad.jsonl.gz"), str(tmp_path / "out"), DataConfig())
    assert str(e.value).startswith(f"{tmp_path / 'bad.jsonl.gz'}: not a readable gzip file")


def test_a_directory_of_split_named_gz_files_keeps_the_published_split_and_names(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    rows = _rows(30)
    for k, split in enumerate(SPLITS):
        (d / f"{split}.jsonl.gz").write_bytes(gzip.compress(_jsonl(rows[k * 10:(k + 1) * 10])))
    got = load(d, "auto")
    assert got.published and sorted(got.files) == sorted(f"{d}/{s}.jsonl.gz" for s in SPLITS)
    assert {r.split for r in got.rows} == set(SPLITS) and all(r.source.endswith(".jsonl.gz") for r in got.rows)


def test_zst_input(tmp_path):
    import zstandard  # a StreamGuard dependency (pyproject.toml, the image locks)

    (tmp_path / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(_rows(12))))
    assert len(load(tmp_path / "d.jsonl.zst", "auto").rows) == 12


def test_zst_without_zstandard_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "zstandard" else real(name, *a, **k))
    (tmp_path / "d.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(UserError, match=r"d.jsonl.zst: a .zst file needs the zstandard package"):
        load(tmp_path / "d.jsonl.zst", "auto")


def test_gz_by_url_and_from_s3(http_dir, s3_store, tmp_path):  # noqa: F811  (the imported fixture)
    root, base = http_dir
    (root / "d.jsonl.gz").write_bytes(gzip.compress(_jsonl(_rows())))
    report = ingest(f"{base}/d.jsonl.gz", str(tmp_path / "u"), DataConfig())
    assert sum(report["counts"].values()) == 40
    s3_store.put_bytes("ds/d.jsonl.gz", gzip.compress(_jsonl(_rows())))
    report = ingest(f"s3://{s3_store.bucket}/prefix/ds/d.jsonl.gz", str(tmp_path / "s"), DataConfig())
    assert sum(report["counts"].values()) == 40 and report["files"] == [f"s3://{s3_store.bucket}/prefix/ds/d.jsonl.gz"]
