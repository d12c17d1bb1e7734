"""predictions.jsonl: what the writer writes the reader reads back; a bad row names its file and line."""

from __future__ import annotations

import json

import pytest

from streamguard.errors import UserError
from streamguard.eval.predictions import read_predictions, write_predictions


def test_round_trip_with_ids_pairs_and_the_threshold(tmp_path):
    path = tmp_path / "predictions.jsonl"
    write_predictions(path, ["12", "fn-a", "7"], [1, 0, 1], [0.91234567, 0.2, 0.5], 0.5, ["p1", None, "p1"])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"idx": 12, "label": 1, "prob": 0.912346, "pred": 1, "pair_id": "p1"},
                    {"idx": "fn-a", "label": 0, "prob": 0.2, "pred": 0},
                    {"idx": 7, "label": 1, "prob": 0.5, "pred": 1, "pair_id": "p1"}]
    ids, y, p, pairs = read_predictions(path)
    assert ids == ["12", "fn-a", "7"] and y.tolist() == [1, 0, 1] and p.tolist() == [0.912346, 0.2, 0.5]
    assert pairs == ["p1", None, "p1"]


def test_without_pair_ids_no_row_has_one(tmp_path):
    path = tmp_path / "predictions.jsonl"
    write_predictions(path, ["a", "b"], [0, 1], [0.4, 0.6], 0.55)
    assert all("pair_id" not in json.loads(line) for line in path.read_text().splitlines())
    assert read_predictions(path)[3] == [None, None]


def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"idx": 1, "label": 0, "prob": 0.1}\n{"idx": 2, "prob": 0.3}\n')
    with pytest.raises(UserError, match=r"predictions.jsonl: line 2: bad prediction row"):
        read_predictions(path)
