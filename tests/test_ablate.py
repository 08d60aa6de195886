"""vlrface ablate at toy scale: a 2-variant plan end to end, resume, plan checks, aggregation."""

import json

import numpy as np
import pytest
import yaml

from vlrface.ablate import Ablation, aggregate, load_plan, with_overrides
from vlrface.cli import main
from vlrface.errors import UserError

TINY = [
    "model.embedding_size=16",
    "data.num_identities=6",
    "data.images_per_identity=3",
    "data.ui.size=8",
    "train.batch_size=8",
    "train.ckpt_every=0",
]


def write_plan(tmp_path, **changes):
    plan = {
        "seeds": [0],
        "synthetic": {"identities": 4, "probes_per_identity": 2},
        "datasets": {
            "synthetic": {
                "recipe": "demo",
                "overrides": TINY,
                "eval": ["synthetic"],
                "pretrain": ["model.pam=false", "model.prm=false", "ri.enabled=false", "train.steps=3"],
                "finetune": ["train.steps=2"],
                "sizes": [16, 8],  # the dataset's sizes win over the plan's
            }
        },
        "variants": {
            "arcface": ["model.pam=false", "model.prm=false", "ri.enabled=false"],
            "full": ["model.pam=true", "model.prm=true", "ri.enabled=true"],
        },
    } | changes
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_tiny_plan_end_to_end_then_resume_skips_finished_runs(tmp_path):
    out, lines = tmp_path / "out", []
    summary = Ablation(load_plan(write_plan(tmp_path)), out, log=lines.append).run()
    assert (out / "synthetic" / "pretrain" / "model.pt").is_file()
    rows = summary["datasets"]["synthetic"]["rows"]
    assert list(rows) == ["raw-pixels", "pre-trained (HR only)", "arcface", "full"]
    assert rows["arcface"]["synthetic"]["16px"]["rank1"]["n"] == 1
    assert set(rows["raw-pixels"]["synthetic"]) == set(rows["full"]["synthetic"]) == {"16px", "8px"}
    assert "fnmr@reject=0.3|ri" in rows["full"]["synthetic"]["16px"]  # the PRM's quality is evaluated
    assert "fnmr@reject=0.3|ri" not in rows["arcface"]["synthetic"]["16px"]
    result = json.loads((out / "synthetic" / "full" / "seed0" / "result.json").read_text())
    assert result["variant"] == "full" and result["steps"] == 2 and "erc" not in result["results"]["synthetic"]["16px"]
    assert not (out / "synthetic" / "full" / "seed0" / "last.pt").exists()
    assert [line.split(":")[0] for line in lines if line.startswith("[")] == [
        "[1/2] synthetic arcface seed 0",
        "[2/2] synthetic full seed 0",
    ]
    md = (out / "summary.md").read_text()
    assert "| raw-pixels |" in md and "| full |" in md and "FNMR at FMR" in md

    # resume: the finished runs are skipped (their results untouched); a removed one is redone
    (out / "synthetic" / "arcface" / "seed0" / "result.json").unlink()
    kept = (out / "synthetic" / "full" / "seed0" / "result.json").stat().st_mtime_ns
    lines.clear()
    again = Ablation(load_plan(write_plan(tmp_path)), out, log=lines.append).run()
    assert lines[0].startswith("[1/2] synthetic arcface seed 0: ") and "skipped" not in lines[0]
    assert lines[1] == "[2/2] synthetic full seed 0: done before, skipped"
    assert (out / "synthetic" / "full" / "seed0" / "result.json").stat().st_mtime_ns == kept
    assert again["datasets"]["synthetic"]["rows"]["full"] == rows["full"]
    assert not any("pretrain" in line for line in lines)  # the shared pre-training is reused


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seedz": [0]}, "unknown config key 'seedz'"),
        ({"variants": {"full": ["ri.tauu=2"]}}, "unknown config key 'ri.tauu'"),
        ({"variants": {"full": ["data.num_identities=3"]}}, "only data.vlr.* may vary"),
        ({"sizes": "big"}, "config key 'sizes[0]' must be int"),
    ],
)
def test_bad_plan_is_a_user_error(tmp_path, change, message):
    with pytest.raises(UserError, match=message.replace("*", r"\*").replace("[", r"\[").replace("]", r"\]")):
        load_plan(write_plan(tmp_path, **change))


def test_bad_dataset_fields_and_names(tmp_path):
    plan = write_plan(tmp_path)
    with pytest.raises(UserError, match="unknown variant 'nope'"):
        load_plan(plan, variants=["nope"])
    raw = yaml.safe_load(plan.read_text())
    raw["datasets"]["synthetic"]["eval"] = ["att-vlr"]
    plan.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="needs its folder"):
        load_plan(plan)


def test_cli_maps_plan_errors_to_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["ablate", "--plan", str(write_plan(tmp_path, seedz=1)), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "seedz" in capsys.readouterr().err


def test_naming_another_head_drops_the_recipes_head_arguments():
    cfg = with_overrides("demo", ["head.name=softmax"])  # demo.yaml gives arcface scale and margin
    assert cfg.head.name == "softmax" and cfg.head.kwargs == {}
    cfg = with_overrides("demo", ["head.name=cosface", "head.kwargs.margin=0.2"])
    assert cfg.head.kwargs == {"margin": 0.2}
    assert with_overrides("demo", ["head.kwargs.margin=0.2"]).head.kwargs == {"scale": 32.0, "margin": 0.2}


def test_aggregate_mean_and_sample_std():
    runs = [{"s": {"16px": {"rank1": v}}} for v in (0.5, 0.7, 0.9)]
    stat = aggregate(runs)["s"]["16px"]["rank1"]
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(0.7)
    assert stat["std"] == pytest.approx(np.sqrt(((0.2**2) * 2) / 2))  # ddof = 1
    assert aggregate(runs[:1])["s"]["16px"]["rank1"]["std"] == 0.0


def test_table_only_trains_nothing(tmp_path):
    out = tmp_path / "out"
    main_args = ["ablate", "--plan", str(write_plan(tmp_path)), "--out", str(out), "--table-only"]
    with pytest.raises(SystemExit) as e:
        main(main_args)
    assert e.value.code == 0
    assert not (out / "synthetic" / "pretrain").exists()
    rows = json.loads((out / "summary.json").read_text())["datasets"]["synthetic"]["rows"]
    assert list(rows) == ["raw-pixels"]  # no run finished yet: only the reference row
