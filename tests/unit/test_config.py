import pytest

from streamguard.config import load_config, parse_set
from streamguard.errors import UserError


def test_profiles_load_and_override():
    cfg = load_config("demo", overrides={"gnn": {"epochs": 7}}, sets=["transformer.lr=null", "train.amp=off"])
    assert cfg.gnn.epochs == 7 and cfg.transformer.lr is None and cfg.train.amp == "off"
    assert cfg.gnn.hidden == 96 and cfg.gnn.lr == 0.001  # an override keeps the profile's other fields
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
