import pytest

from vlrface.config import load_config, parse_overrides
from vlrface.errors import UserError


def test_defaults_and_overrides_are_typed():
    cfg = load_config(None, ["train.steps=5", "ri.tau=3", "head.kwargs.margin=0.4", "data.vlr.interpolations=[area]"])
    assert cfg.train.steps == 5
    assert cfg.ri.tau == 3.0 and isinstance(cfg.ri.tau, float)
    assert cfg.head.kwargs == {"margin": 0.4}
    assert cfg.data.vlr.interpolations == ["area"]


def test_yaml_file_then_override_wins(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  steps: 7\n  batch_size: 4\nri:\n  enabled: false\n")
    cfg = load_config(p, ["train.steps=9"])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.ri.enabled) == (9, 4, False)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trian.steps=3", "did you mean 'train'"),
        ("train.stps=3", "did you mean 'train.steps'"),
        ("train.steps=abc", "must be int"),
        ("ri.enabled=2", "true/false"),
        ("train.steps", "key=value"),
    ],
)
def test_bad_keys_and_values_are_one_line_user_errors(override, message):
    with pytest.raises(UserError, match=message) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_shipped_recipe_by_name():
    cfg = load_config("demo")
    assert cfg.data.kind == "synth"


def test_parse_overrides_nests():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
