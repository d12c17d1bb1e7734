import ast
import inspect
import re
import subprocess
import sys
from typing import get_args

import pytest

from streamguard import config as config_mod
from streamguard.config import AmpMode, CollapseAction, CollapseConfig, SplitStrategy, load_config, parse_set
from streamguard.errors import UserError


def test_profiles_load_and_override():
    cfg = load_config("demo", overrides={"gnn": {"epochs": 7}}, sets=["transformer.lr=null", "train.amp=off"])
    assert cfg.gnn.epochs == 7 and cfg.transformer.lr is None and cfg.train.amp == "off"
    assert cfg.gnn.hidden == 96 and cfg.gnn.patience == 6 and cfg.gnn.lr is None  # the profile's other fields stay
    assert cfg.transformer.pretrained == "scratch"
    assert load_config("production").transformer.pretrained == "microsoft/codebert-base"


@pytest.mark.parametrize("item, msg", [
    ("gnn.epochs=abc", "gnn.epochs: expected an integer, got 'abc'"),
    ("gnn.nope=1", "gnn.nope: unknown field"),
    ("train.deterministic=3", "train.deterministic: expected true/false"),
])
def test_bad_values_name_field_and_value(item, msg):
    with pytest.raises(UserError, match=msg):
        load_config("demo", sets=[item])


def test_unknown_profile_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="known profiles: demo, production, test"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gnn: [unclosed")
    with pytest.raises(UserError, match="invalid YAML"):
        load_config(str(bad))


def test_parse_set_nests():
    assert parse_set(["a.b=1", "a.c=x"]) == {"a": {"b": "1", "c": "x"}}


def test_configmap_env_sits_between_profile_and_overrides(monkeypatch):
    monkeypatch.setenv("LR_CACHE_TTL_HOURS", "24")
    assert load_config("demo").train.lr_cache_ttl_hours == 24.0
    assert load_config("demo", sets=["train.lr_cache_ttl_hours=1"]).train.lr_cache_ttl_hours == 1.0
    monkeypatch.setenv("LR_CACHE_TTL_HOURS", "soon")
    with pytest.raises(UserError, match="train.lr_cache_ttl_hours: expected a number, got 'soon'"):
        load_config("demo")


def test_exponent_floats_are_numbers_on_the_cli_and_in_yaml(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-4` (no dot) as a string; for a float field it is the number a user meant
    cfg = load_config("demo", sets=["train.collapse.min_output_std=1e-8", "gnn.lr=5E-3"])
    assert cfg.train.collapse.min_output_std == 1e-8 and cfg.gnn.lr == 0.005
    with pytest.raises(UserError, match="gnn.lr: expected a number, got '1e-'"):
        load_config("demo", sets=["gnn.lr=1e-"])


def test_null_in_overrides_means_none_where_the_field_is_not_a_string():
    # a KFP parameter cannot carry a JSON null through the SDK: the pipeline's overrides write "null"
    assert load_config("test", overrides={"gnn": {"lr": "null"}}).gnn.lr is None
    with pytest.raises(UserError, match="gnn.lr: expected a number, got ''"):
        load_config("test", overrides={"gnn": {"lr": ""}})


# ------------------------------------------------------------------ fixed choices (Literal fields)
@pytest.mark.parametrize("item, msg", [
    ("train.collapse.action=reduce-lr",
     "--set: train.collapse.action: unknown value 'reduce-lr' (allowed: stop, reduce_lr)"),
    ("train.amp=fp8", "--set: train.amp: unknown value 'fp8' (allowed: auto, off, bf16, fp16)"),
    ("data.split_strategy=projects",
     "--set: data.split_strategy: unknown value 'projects' (allowed: auto, published, random, project, time)"),
    ("train.collapse_action=stop", "--set: train.collapse_action: unknown field"),  # the old flat name is gone
    ("data.max_tokens=512", "--set: data.max_tokens: unknown field"),  # dead field removed
])
def test_a_mistyped_choice_stops_the_load(item, msg):
    with pytest.raises(UserError) as e:
        load_config("test", sets=[item])
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_every_allowed_choice_loads_including_yaml_words():
    for amp in get_args(AmpMode):  # "off" stays the string "off" (not YAML's false)
        assert load_config("test", sets=[f"train.amp={amp}"]).train.amp == amp
    for action in get_args(CollapseAction):
        cfg = load_config("test", overrides={"train": {"collapse": {"action": action}}})
        assert cfg.train.collapse.action == action


def test_a_profile_file_with_a_bad_choice_names_file_field_value_and_choices(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("train:\n  amp: fp8\n")
    with pytest.raises(UserError) as e:
        load_config(str(bad))
    assert str(e.value) == f"{bad}: train.amp: unknown value 'fp8' (allowed: auto, off, bf16, fp16)"
    bad.write_text("train:\n  amp: off\n")  # YAML 1.1 reads unquoted off as false
    with pytest.raises(UserError, match="quote the value"):
        load_config(str(bad))
    bad.write_text("train:\n  amp: 'off'\n  collapse: {action: reduce_lr, lr_factor: 0.5}\n")
    cfg = load_config(str(bad))
    assert cfg.train.amp == "off" and cfg.train.collapse.action == "reduce_lr" and cfg.train.collapse.lr_factor == 0.5
    assert cfg.train.collapse.grad_factor == CollapseConfig().grad_factor  # the rest of the section keeps its defaults


@pytest.mark.parametrize("item, msg", [
    ("train.collapse.action=reduce-lr", "train.collapse.action: unknown value 'reduce-lr' (allowed: stop, reduce_lr)"),
    ("train.collapse_action=reduce-lr", "train.collapse_action: unknown field"),
])
def test_cli_exits_2_at_load_with_one_line(tmp_path, item, msg):
    # train-gnn on inputs that do not exist: the config is checked first, so the typo is what is reported
    r = subprocess.run([sys.executable, "-m", "streamguard", "train-gnn", "--data", str(tmp_path / "data"), "--graphs",
                        str(tmp_path / "graphs"), "--seed", "1", "--model-dir", str(tmp_path / "m"), "--result-dir",
                        str(tmp_path / "r"), "--profile", "test", "--store", str(tmp_path / "store"), "--set", item],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "store").exists()


def test_literal_docstrings_list_exactly_the_allowed_values():
    """Each Literal field's docstring names every allowed value, and the code that acts on it accepts exactly those."""
    tree = ast.parse(inspect.getsource(config_mod))
    literals = {"AmpMode": get_args(AmpMode), "CollapseAction": get_args(CollapseAction),
                "SplitStrategy": get_args(SplitStrategy)}
    seen = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.ClassDef) or not body:
            continue
        for stmt, nxt in zip(body, body[1:] + [None]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.annotation, ast.Name) \
                    and stmt.annotation.id in literals:
                doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else ""
                words = set(re.findall(r"\b[a-z0-9_]+\b", doc))
                missing = [v for v in literals[stmt.annotation.id] if v not in words]
                assert not missing, f"{node.name}.{stmt.target.id}: docstring misses {missing}"
                seen.add(stmt.annotation.id)
    assert seen == set(literals)

    from streamguard.data.splits import STRATEGIES
    from streamguard.train.amp import AMP_MODES, make_amp
    from streamguard.train.collapse import ACTIONS

    assert (AMP_MODES, ACTIONS, STRATEGIES) == (literals["AmpMode"], literals["CollapseAction"],
                                                literals["SplitStrategy"])
    for mode in AMP_MODES:
        make_amp("cpu", mode)  # every documented mode is accepted
    with pytest.raises(UserError, match="train.amp: unknown value 'fp8'"):
        make_amp("cpu", "fp8")
