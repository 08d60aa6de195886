"""ri.div_source and model.pam_mode through the trainer: defaults, build-time errors, logs and summary.json."""

import json

import pytest

from vlrface.config import config_from_dict, load_config
from vlrface.errors import UserError
from vlrface.train.trainer import Trainer

TINY = [
    "data.num_identities=6",
    "data.images_per_identity=4",
    "data.ui.size=8",
    "model.backbone=iresnet_nano",
    "model.embedding_size=16",
    "train.batch_size=8",
    "train.steps=4",
    "train.log_every=1",
    "train.ckpt_every=0",
    "ri.ui_every=2",
    "optim.lr=0.05",
]


def tiny(tmp_path, name, *extra):
    return load_config(None, [f"out={tmp_path / name}", *TINY, *extra])


def test_defaults_are_todays_behaviour_and_old_configs_get_them():
    cfg = config_from_dict({"model": {"backbone": "iresnet_nano", "pam": True}, "ri": {"ui_stats": "nearest"}})
    assert cfg.model.pam_mode == "residual" and cfg.ri.div_source == "labelled"


def test_unknown_choices_are_user_errors_when_the_config_is_read():
    with pytest.raises(UserError, match=r"ri\.div_source.*labelled, predicted"):
        load_config(None, ["ri.div_source=guessed"])
    with pytest.raises(UserError, match=r"model\.pam_mode.*residual, branch"):
        load_config(None, ["model.pam_mode=side"])


def test_predicted_without_prm_is_a_user_error_at_build_time(tmp_path):
    with pytest.raises(UserError, match="needs model"):
        Trainer(tiny(tmp_path, "x", "model.prm=false", "ri.div_source=predicted"), progress=False)


def test_predicted_branch_run_logs_shares_and_writes_summary(tmp_path):
    t = Trainer(tiny(tmp_path, "run", "ri.div_source=predicted", "model.pam_mode=branch"), progress=False)
    t.fit()
    assert t.model.pam is not None and t.model.pam.gate is None
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"pushed", "mu_ui", "sigma_ui", "xi_hat", "id", "mse"} <= set(records[-1])
    assert any("pushed_hr" in r for r in records) and any("pushed_vlr" in r for r in records)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 4
    for key in ("pushed", "mu_ui", "sigma_ui"):
        values = [r[key] for r in records]
        assert summary[key]["mean"] == pytest.approx(sum(values) / len(values))
        assert summary[key]["last"] == values[-1] and summary[key]["logged_steps"] == 4
