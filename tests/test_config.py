from pathlib import Path

import pytest

import vlrface
from vlrface.config import CHECKS, INTERPOLATIONS, Config, load_config, parse_overrides
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


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=-5", "'train.steps' must be ≥ 1, got -5"),
        ("train.steps=0", "'train.steps' must be ≥ 1"),
        ("train.batch_size=0", "'train.batch_size' must be ≥ 1"),
        ("train.log_every=0", "'train.log_every' must be ≥ 1"),
        ("train.partial_fc_rate=0", "'train.partial_fc_rate' must be > 0"),
        ("train.partial_fc_rate=1.5", "'train.partial_fc_rate' must be ≤ 1"),
        ("train.amp=fp8", "'train.amp' must be one of none, bf16, fp16"),
        ("data.vlr.prob=1.5", "'data.vlr.prob' must be ≤ 1"),
        ("data.vlr.prob=-0.1", "'data.vlr.prob' must be ≥ 0"),
        ("data.vlr.prob=.nan", "'data.vlr.prob' must be a finite number"),
        ("ri.tau=.inf", "'ri.tau' must be a finite number"),
        ("data.vlr.interpolations=[bicubic,nearest]", "'data.vlr.interpolations[1]' must be one of"),
        ("data.vlr.min_size=40", "'data.vlr.min_size' (40) must not exceed 'data.vlr.max_size' (32)"),
        ("data.jitter.scale=0.9", "'data.jitter.scale' must be ≤ 0.5"),
        ("data.jitter.rotate=-3", "'data.jitter.rotate' must be ≥ 0"),
        ("data.num_identities=0", "'data.num_identities' must be ≥ 1"),
        ("ri.ui_every=0", "'ri.ui_every' must be ≥ 1"),
        ("ri.ema_momentum=2", "'ri.ema_momentum' must be ≤ 1"),
        ("optim.lr=0", "'optim.lr' must be > 0"),
        ("optim.name=adam", "'optim.name' must be one of sgd, adamw"),
        ("schedule.name=linear", "'schedule.name' must be one of cosine, step, constant"),
        ("schedule.milestones=[10,-1]", "'schedule.milestones[1]' must be ≥ 0"),
        ("eval.probe_sizes=[16,0]", "'eval.probe_sizes[1]' must be ≥ 1"),
        ("model.init_head=copy", "'model.init_head' must be one of imprint, checkpoint"),
        ("seed=-1", "'seed' must be ≥ 0"),
        ("train.steps=[1", "not valid YAML"),
    ],
)
def test_values_out_of_range_are_refused_by_the_schema(override, message):
    with pytest.raises(UserError) as e:
        load_config(None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_check_names_a_real_key_and_the_defaults_pass():
    cfg = Config()
    for key in CHECKS:
        node = cfg
        for part in key.split("."):
            assert hasattr(node, part), f"CHECKS names {key}, which the schema lacks"
            node = getattr(node, part)
    load_config(None, [])  # the defaults are valid


def test_interpolation_names_are_the_degraders():
    from vlrface.data.degrade import INTERPOLATIONS as DEGRADE

    assert tuple(INTERPOLATIONS) == tuple(DEGRADE)


def test_every_shipped_recipe_is_valid():
    from vlrface.ablate import load_plan

    shipped = sorted((Path(vlrface.__file__).parent / "configs").glob("*.yaml"))
    assert shipped
    for path in shipped:
        if path.stem == "ablation":
            load_plan(path)  # a plan: builds every variant's config
        else:
            load_config(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_config_file_is_refused_not_read_as_all_defaults(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="is empty"):
        load_config(path)
