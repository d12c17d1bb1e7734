"""A dataset with one class only, or a split left without one: ingest warns, pre-flight fails with exit 4
and one line, before any training."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from streamguard.cli import main
from streamguard.config import DataConfig
from streamguard.data.ingest import ingest
from streamguard.errors import EXIT_PREFLIGHT


def _row(i: int, target: int) -> str:
    return json.dumps({"func": f"int f{i}(int a) {{ return a * {i} + {i % 5}; }}\n", "target": target, "idx": i})


def _preflight(data: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    code = main(["preflight", "--data", str(data), "--output", str(tmp_path / "pf"), "--checks", "data",
                 "--store", str(tmp_path / "store"), "--profile", "test",
                 "--set", "transformer.pretrained=microsoft/codebert-base"])  # no tokenizer needed: estimate
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("streamguard: error:")]


def test_one_class_dataset_warns_at_ingest_and_fails_preflight(tmp_path, caplog, capsys):
    src = tmp_path / "safe.jsonl"
    src.write_text("".join(_row(i, 0) + "\n" for i in range(80)))
    with caplog.at_level(logging.WARNING, logger="streamguard.data.ingest"):
        report = ingest(str(src), str(tmp_path / "data"), DataConfig())
    assert report["warnings"] == ["the dataset has one class only (80 samples, all safe); a detector needs both "
                                  "(pre-flight will fail)"]
    assert any("one class only" in r.getMessage() for r in caplog.records)
    assert "one class only" in (tmp_path / "data" / "data_card.md").read_text()
    code, errors = _preflight(tmp_path / "data", tmp_path, capsys)
    assert code == EXIT_PREFLIGHT == 4 and len(errors) == 1
    assert "the dataset has one class only (80 samples, all safe)" in errors[0]
    assert "split train" not in errors[0]  # one finding, not one per split


def test_split_left_without_a_class_warns_at_ingest_and_fails_preflight(tmp_path, caplog, capsys):
    d = tmp_path / "published"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(_row(i, i % 2) + "\n" for i in range(60)))
    (d / "valid.jsonl").write_text("".join(_row(i, 0) + "\n" for i in range(100, 110)))  # no vulnerable one
    (d / "test.jsonl").write_text("".join(_row(i, i % 2) + "\n" for i in range(200, 210)))
    with caplog.at_level(logging.WARNING, logger="streamguard.data.ingest"):
        report = ingest(str(d), str(tmp_path / "data"), DataConfig())
    assert report["split_strategy"] == "published"
    assert report["warnings"] == ["split valid has no vulnerable samples (10 samples, all safe); pre-flight will fail"]
    assert any("split valid has no vulnerable samples" in r.getMessage() for r in caplog.records)
    code, errors = _preflight(tmp_path / "data", tmp_path, capsys)
    assert code == EXIT_PREFLIGHT and len(errors) == 1
    assert "split valid has a single class (all safe; 10 samples)" in errors[0]
    assert json.loads((tmp_path / "pf" / "preflight_report.json").read_text())["failed"] == ["data"]


def test_both_classes_everywhere_gives_no_warning(tmp_path):
    src = tmp_path / "ok.jsonl"
    src.write_text("".join(_row(i, i % 2) + "\n" for i in range(80)))
    assert ingest(str(src), str(tmp_path / "data"), DataConfig())["warnings"] == []
