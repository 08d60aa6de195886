"""``vlrface eval`` end to end on a tiny att-layout set with a tiny checkpoint."""

import json

import cv2
import numpy as np
import pytest
import torch

from vlrface.checkpoint import atomic_save, make_checkpoint
from vlrface.cli import main
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing

MODEL = {"backbone": "iresnet_nano", "embedding_size": 16, "backbone_kwargs": {"widths": [4, 8, 8, 8]}}


def run(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    rng = np.random.default_rng(0)
    for s in range(21, 41):
        base = rng.integers(0, 255, (4, 4)).astype(np.float32)
        for n in (1, 2):
            img = cv2.resize(base, (92, 112), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 3, (112, 92))
            (tmp_path / "att" / f"s{s}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "att" / f"s{s}" / f"{n}.pgm"), np.clip(img, 0, 255).astype(np.uint8))
    torch.manual_seed(0)
    model = build_model(MODEL)
    ckpt = tmp_path / "tiny.pt"
    atomic_save(make_checkpoint(model=model, config={"model": MODEL}, preprocessing=Preprocessing()), ckpt)
    return tmp_path, ckpt


def test_eval_writes_metrics_report_and_plots(setup, capsys):
    tmp, ckpt = setup
    out = tmp / "out"
    argv = [
        "eval",
        "--protocol",
        "att-vlr",
        "--data",
        str(tmp / "att"),
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--probe-size",
        "12",
        "--flip",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ]
    assert run(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["schema"] == "vlrface-eval-1" and m["protocol"] == "att-vlr" and m["flip"] is True
    assert set(m["results"]) == {"model", "raw-pixel"} and list(m["results"]["model"]) == ["12px"]
    r = m["results"]["model"]["12px"]
    assert r["n_probes"] == 20 and 0 <= r["cmc"]["1"] <= 1 and "erc" in r["verification"]
    assert m["results"]["raw-pixel"]["12px"]["cmc"]["1"] > 0.5  # the patterns survive 12 px
    report = (out / "report.md").read_text()
    assert "raw-pixel" in report and str((tmp / "att").resolve()) in report
    assert all((out / f).stat().st_size > 0 for f in ("cmc.png", "roc.png", "erc.png"))
    assert any((tmp / "xdg" / "vlrface" / "embeddings").iterdir())  # cached for the re-run
    assert "12px: rank-1" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["missing-data", "unknown-protocol", "wrong-layout"])
def test_eval_user_errors_exit_2_with_one_line(setup, capsys, bad):
    tmp, ckpt = setup
    data, proto = tmp / "att", "att-vlr"
    if bad == "missing-data":
        data = tmp / "nope"
    elif bad == "unknown-protocol":
        proto = "nope"
    else:
        data = tmp
    assert run(["eval", "--protocol", proto, "--data", str(data), "--ckpt", str(ckpt), "--out", str(tmp / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlrface: error:") and "\n" not in err and "Traceback" not in err


def test_eval_open_set_with_the_nac_matcher(setup, capsys):
    tmp, ckpt = setup
    out = tmp / "nac"
    argv = [
        "eval",
        "--protocol",
        "att-vlr-open",
        "--data",
        str(tmp / "att"),
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--probe-size",
        "8",
        "--matcher",
        "nac",
        "--nac-temperature",
        "0.5",
        "--no-baseline",
        "--no-cache",
    ]
    assert run(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["matcher"] == {"name": "nac", "k": 16, "temperature": 0.5}
    r = m["results"]["model"]["8px"]
    assert r["matcher"] == "nac" and r["n_gallery_identities"] == 14 and r["open_set"]["n_unmated"] == 6
    assert "DIR@FAR=1e-2" in (out / "report.md").read_text() and "8px: rank-1" in capsys.readouterr().out


def test_eval_nac_options_need_the_nac_matcher(setup, capsys):
    tmp, ckpt = setup
    argv = ["eval", "--protocol", "att-vlr", "--data", str(tmp / "att"), "--ckpt", str(ckpt), "--nac-k", "4"]
    assert run(argv) == 2 and "--matcher nac" in capsys.readouterr().err
