"""What real editors write: a UTF-8 byte-order mark and CRLF line ends in every reader of user files
(JSONL, JSON array, CSV, CodeXGLUE index files, the YAML profile); UTF-16 refused with one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from streamguard.cli import main
from streamguard.config import DataConfig, load_config
from streamguard.data.ingest import ingest
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import UserError

BOM = b"\xef\xbb\xbf"


def _func(i: int) -> str:
    return f"int fn_{i}(int a)\n{{\n    return a * {i} + {i % 7};\n}}\n"


def windows(text: str) -> bytes:
    """As a Windows editor saves it: UTF-8 with a BOM, CRLF line ends."""
    return BOM + text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _samples(out: Path) -> dict:
    return {s.id: (split, s.func, s.target) for split in SPLITS for s in read_split(out, split)}


def _jsonl_text(n: int = 200) -> str:
    return "".join(json.dumps({"func": _func(i), "target": i % 2, "idx": i}) + "\n" for i in range(n))


def _json_array_text(n: int = 60) -> str:
    return json.dumps([{"project": "p", "commit_id": f"c{i}", "target": i % 2, "func": _func(i)} for i in range(n)],
                      indent=1) + "\n"


def _csv_text(n: int = 60, lineterminator: str = "\n") -> str:
    """BigVul-like CSV; multi-line functions in quoted cells keep LF (as Excel writes them) whatever the row end."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(["", "func_before", "func_after", "vul", "project"])
    for i in range(n):
        w.writerow([1000 + i, _func(i), _func(i), i % 2, f"p{i % 3}"])
    return buf.getvalue()


def _compare(tmp_path: Path, name: str, text: str, win: bytes | None = None):
    """Ingest ``text`` saved plainly and saved by a Windows editor (``win``, default ``windows(text)``): both give
    the same samples and nothing is quarantined."""
    results = []
    for tag, data in (("plain", text.encode("utf-8")), ("windows", win if win is not None else windows(text))):
        src = tmp_path / tag / name
        src.parent.mkdir()
        src.write_bytes(data)
        report = ingest(str(src), str(tmp_path / f"out-{tag}"), DataConfig())
        assert report["quarantined"] == 0, (tag, report["bad_rows"])
        results.append((report, _samples(tmp_path / f"out-{tag}")))
    (plain, a), (win, b) = results
    assert a == b and plain["fingerprint"] == win["fingerprint"] and plain["format"] == win["format"]
    return win


def test_jsonl_with_bom_and_crlf_keeps_its_first_row(tmp_path):
    report = _compare(tmp_path, "data.jsonl", _jsonl_text(200))
    assert report["rows_read"] == 200 and sum(report["counts"].values()) == 200 and report["format"] == "codexglue"


def test_json_array_with_bom_and_crlf(tmp_path):
    report = _compare(tmp_path, "function.json", _json_array_text())
    assert report["format"] == "devign" and sum(report["counts"].values()) == 60


def test_csv_with_bom_and_crlf_keeps_the_first_column(tmp_path):
    win = BOM + _csv_text(lineterminator="\r\n").encode("utf-8")  # Excel's "CSV UTF-8"
    assert win.count(b"\r\n") == 61
    report = _compare(tmp_path, "bigvul.csv", _csv_text(), win)
    assert report["format"] == "bigvul" and report["rows_read"] == 60
    ids = {i for i in _samples(tmp_path / "out-windows")}
    assert ids == {str(1000 + i) for i in range(60)}  # from the first (unnamed) column, not a BOM-named one


def test_codexglue_index_files_with_bom_and_crlf(tmp_path):
    d = tmp_path / "cxg"
    d.mkdir()
    (d / "function.json").write_bytes(windows(_json_array_text(30)))
    for split, ids in (("train", range(0, 20)), ("valid", range(20, 25)), ("test", range(25, 30))):
        (d / f"{split}.txt").write_bytes(windows("".join(f"{i}\n" for i in ids)))
    report = ingest(str(d), str(tmp_path / "out"), DataConfig())
    assert report["split_strategy"] == "published" and report["unassigned"] == 0
    got = _samples(tmp_path / "out")
    assert sorted(int(i) for i, v in got.items() if v[0] == "train") == list(range(20))  # idx 0 despite the BOM
    assert report["counts"] == {"train": 20, "valid": 5, "test": 5}


def test_yaml_profile_with_bom_crlf_or_utf16(tmp_path):
    text = "gnn:\n  epochs: 7\ntrain:\n  amp: 'off'\n"
    (tmp_path / "win.yaml").write_bytes(windows(text))
    (tmp_path / "u16.yaml").write_bytes(text.encode("utf-16"))
    for name in ("win.yaml", "u16.yaml"):
        cfg = load_config(str(tmp_path / name))
        assert cfg.gnn.epochs == 7 and cfg.train.amp == "off"


@pytest.mark.parametrize("encoding,expected", [("utf-16", "UTF-16-LE (with byte-order mark)"),
                                               ("utf-16-le", "UTF-16-LE (no byte-order mark)"),
                                               ("utf-16-be", "UTF-16-BE (no byte-order mark)"),
                                               ("utf-32", "UTF-32-LE (with byte-order mark)")])
@pytest.mark.parametrize("name,text", [("data.jsonl", _jsonl_text(20)), ("function.json", _json_array_text(20)),
                                       ("bigvul.csv", _csv_text(20))])
def test_utf16_and_utf32_inputs_are_one_clear_error(tmp_path, name, text, encoding, expected):
    src = tmp_path / name
    src.write_bytes(text.encode(encoding))
    with pytest.raises(UserError) as e:
        ingest(str(src), str(tmp_path / "out"), DataConfig())
    msg = str(e.value)
    assert "\n" not in msg and str(src) in msg and expected in msg and "UTF-8" in msg


def test_utf16_index_file_is_one_clear_error(tmp_path):
    d = tmp_path / "cxg"
    d.mkdir()
    (d / "function.json").write_text(_json_array_text(30))
    for split, ids in (("train", range(0, 20)), ("valid", range(20, 25)), ("test", range(25, 30))):
        text = "".join(f"{i}\r\n" for i in ids)
        (d / f"{split}.txt").write_bytes(text.encode("utf-16" if split == "valid" else "utf-8"))
    with pytest.raises(UserError, match=r"cxg/valid\.txt: file is encoded as UTF-16-LE"):
        ingest(str(d), str(tmp_path / "out"), DataConfig())


def test_cli_utf16_input_exits_2_with_one_line(tmp_path, capsys):
    src = tmp_path / "notepad.jsonl"
    src.write_bytes(_jsonl_text(20).encode("utf-16"))
    assert main(["ingest", "--input", str(src), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("streamguard: error:")]
    assert len(lines) == 1 and "UTF-16-LE" in lines[0] and str(src) in lines[0] and "Traceback" not in err
