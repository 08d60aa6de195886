"""``vlrface embed``: images, folders and file lists → .npy + JSON sidecar; nothing dropped silently."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vlrface.checkpoint import atomic_save, load_model, make_checkpoint
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing
from vlrface.serve.app import FaceService

LFW = Path(__file__).resolve().parents[2] / "../shared/data/lfw"


def face(path: Path, seed: int, size: int = 112) -> Path:
    img = np.random.default_rng(seed).integers(0, 256, (14, 14, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC))
    return path


@pytest.fixture
def inputs(tmp_path):
    """A folder (with a sub-folder and a corrupt file), a lone image and a list naming one more and a missing one."""
    a = face(tmp_path / "photos" / "ann" / "1.png", 1)
    b = face(tmp_path / "photos" / "ben" / "2.jpg", 2, size=150)  # resized to 112 on the way in
    (tmp_path / "photos" / "ben" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    c = face(tmp_path / "single.png", 3)
    d = face(tmp_path / "listed" / "4.png", 4)
    (tmp_path / "list.txt").write_text("listed/4.png\nlisted/gone.png\n")
    return [tmp_path / "photos", c, tmp_path / "list.txt"], [a, b, c, d]


def test_embed_writes_rows_paths_quality_and_skips(ckpt, inputs, tmp_path, cli):
    args, usable = inputs
    out = tmp_path / "emb" / "all.npy"
    code, stdout, err = cli(["embed", "--ckpt", ckpt, "--out", out, "--batch-size", 1, *args])
    assert code == 0, err
    assert "embedded 4 of 6 image(s)" in stdout and "skipped 2 unreadable" in err
    emb = np.load(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert emb.dtype == np.float32 and emb.shape == (4, 16) == (meta["count"], meta["dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert meta["paths"] == [str(p) for p in usable]
    assert sorted((Path(s["path"]).name, s["reason"]) for s in meta["skipped"]) == [
        ("broken.jpg", "not a decodable image"),
        ("gone.png", "No such file or directory"),
    ]
    # the same numbers as one batch of all four (model batches of 1, read chunks of 4: neither changes a row)
    service = FaceService(ckpt)
    ref_emb, ref_q = service.encode([service.face(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) for p in usable])
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5)
    np.testing.assert_allclose(meta["quality"], ref_q, atol=1e-5)
    assert meta["checkpoint_sha256"] == service.checkpoint and meta["flip"] is False and meta["align"] is False


def test_flip_and_a_model_without_prm(tmp_path, cli):
    cfg = {"backbone": "iresnet_nano", "embedding_size": 8, "pam": False, "prm": False}
    torch.manual_seed(0)
    ckpt = tmp_path / "plain.pt"
    atomic_save(
        make_checkpoint(model=build_model(cfg).eval(), config={"model": cfg}, preprocessing=Preprocessing()), ckpt
    )
    img = face(tmp_path / "x.png", 5)
    for flip in ([], ["--flip"]):
        assert cli(["embed", "--ckpt", ckpt, "--out", tmp_path / "e.npy", *flip, img])[0] == 0
        meta = json.loads((tmp_path / "e.json").read_text())
        assert meta["quality"] is None and meta["flip"] is bool(flip)
        model, pre, _ = load_model(ckpt)
        x = pre.to_tensor([cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)])
        np.testing.assert_allclose(np.load(tmp_path / "e.npy"), model.infer(x, flip=bool(flip))[0].numpy(), atol=1e-5)
    assert (model.infer(x, flip=True)[0] - model.infer(x)[0]).abs().max() > 1e-3  # --flip did something


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "e.npy", "nothing/here"], "input not found"),
        (["--out", "e.txt", "bad.jpg"], "must end in .npy"),
        (["--out", "blocker/e.npy", "bad.jpg"], "cannot create the folder"),
        (["--out", "e.npy", "bad.jpg"], "no usable image among 1 input(s); nothing written"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(ckpt, tmp_path, monkeypatch, cli, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"")
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    code, _, err = cli(["embed", "--ckpt", ckpt, *args])
    assert code == 2 and message in err and err.strip().splitlines()[-1].startswith("vlrface: error")
    assert not (tmp_path / "e.npy").exists() and not (tmp_path / "e.json").exists()


def test_missing_checkpoint(tmp_path, cli):
    img = face(tmp_path / "x.png", 1)
    code, _, err = cli(["embed", "--ckpt", tmp_path / "no.pt", "--out", tmp_path / "e.npy", img])
    assert code == 2 and "checkpoint not found" in err


def test_align_reports_images_without_a_face(ckpt, tmp_path, cli):
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    photo = sorted(LFW.glob("Ab*/*_0001.jpg"))[0]
    shutil.copy(photo, tmp_path / photo.name)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((160, 160, 3), 127, np.uint8))
    code, stdout, err = cli(["embed", "--ckpt", ckpt, "--align", "--out", tmp_path / "e.npy", tmp_path])
    assert code == 0 and "embedded 1 of 2" in stdout and "no face found" in err
    meta = json.loads((tmp_path / "e.json").read_text())
    assert meta["paths"] == [str(tmp_path / photo.name)] and meta["align"] is True
    assert meta["skipped"] == [{"path": str(tmp_path / "blank.png"), "reason": "no face found"}]
