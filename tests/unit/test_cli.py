import subprocess
import sys

import pytest

from streamguard.cli import build_parser, main

STAGES = ["make-demo-data", "ingest", "build-graphs", "preflight", "train-transformer", "train-gnn", "train-fusion",
          "aggregate"]


def _subparsers():
    ap = build_parser()
    action = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_stage_is_a_command():
    assert set(STAGES) <= set(_subparsers())


@pytest.mark.parametrize("stage", STAGES)
def test_every_option_is_described(stage, capsys):
    sub = _subparsers()[stage]
    for action in sub._actions:
        assert action.help, f"{stage}: option {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit) as e:
        main([stage, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in text


def test_expected_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope"
    r = subprocess.run([sys.executable, "-m", "streamguard", "aggregate", "--output", str(tmp_path / "o"),
                        str(missing)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and str(missing) in err[0] and "model_card.json" in err[0]


def test_bad_config_value_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "streamguard", "preflight", "--data", str(tmp_path), "--output",
                        str(tmp_path / "r"), "--set", "gnn.epochs=many"], capture_output=True, text=True)
    assert r.returncode == 2 and "gnn.epochs: expected an integer, got 'many'" in r.stderr
    assert "Traceback" not in r.stderr


def test_preflight_checks_option_selects_checks(tiny_data, tmp_path):
    data, graphs, _ = tiny_data
    out = tmp_path / "report"
    assert main(["preflight", "--data", str(data), "--graphs", str(graphs), "--output", str(out), "--profile", "test",
                 "--store", str(tmp_path / "store"), "--checks", "data,object_store"]) == 0
    import json

    names = [c["name"] for c in json.loads((out / "preflight_report.json").read_text())["checks"]]
    assert names == ["data", "object_store"]
    assert main(["preflight", "--data", str(data), "--output", str(out), "--checks", "nope"]) == 2
