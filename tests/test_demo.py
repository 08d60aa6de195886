"""The demo end to end at toy scale: three stages, report files, verdict lines."""

import json

import pytest

from vlrface import demo
from vlrface.cli import main

TOY = demo.DemoPlan(
    identities=8, images_per_identity=4, pretrain_steps=4, finetune_steps=3, test_identities=5, probes_per_identity=2
)


def test_demo_writes_report_plots_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "QUICK", TOY)
    monkeypatch.setattr(
        demo,
        "STAGE_OVERRIDES",
        [*demo.STAGE_OVERRIDES, "train.batch_size=8", "data.ui.size=8", "model.embedding_size=16"],
    )
    report = demo.run_demo(tmp_path, quick=True, att=None, progress=False)
    for name in (
        "report.json",
        "report.md",
        "cmc_rank1.png",
        "erc.png",
        "pretrain/model.pt",
        "arcface/model.pt",
        "ri/model.pt",
    ):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "report.json").read_text())
    synth = saved["results"]["synthetic"]
    assert set(synth) == {"raw-pixels", "arcface", "ri"}
    assert set(synth["ri"]) == {"HR", "16px", "12px", "8px"}
    assert {"rank1", "rank5", "tar@far=1e-2", "tar@far=1e-3"} <= set(synth["ri"]["8px"])
    assert "fnmr@reject=0.3|ri" in synth["ri"]["8px"] and "fnmr@reject=0.3|norm" in synth["ri"]["8px"]
    assert any("RI" in line and "ArcFace" in line for line in report["verdict"])
    assert "synthetic faces" in (tmp_path / "report.md").read_text()
    stages = {"pretrain", "arcface", "ri", "evaluate"}
    assert set(saved["seconds"]) == stages | {f"cpu:{s}" for s in stages}


def test_demo_rejects_missing_att_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--out", str(tmp_path), "--att", str(tmp_path / "nope")])
    assert e.value.code == 2 and "--att folder not found" in capsys.readouterr().err
