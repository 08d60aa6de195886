import csv
import io
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vlrface.checkpoint import atomic_save, load_checkpoint, load_model, make_checkpoint
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing


@pytest.fixture
def faces(tmp_path) -> Path:
    """Three readable 'faces' in a folder tree and one corrupt file."""
    root = tmp_path / "faces"
    for i, rel in enumerate(("a.png", "sub/b.png", "sub/c.jpg")):
        img = np.random.default_rng(i).integers(0, 256, (14, 14, 3), dtype=np.uint8)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), cv2.resize(img, (112, 112), interpolation=cv2.INTER_CUBIC))
    (root / "broken.png").write_bytes(b"not an image")
    return root


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_ri_scores_match_the_model_and_unreadable_files_are_reported(ckpt, faces, tmp_path, cli):
    out = tmp_path / "q" / "ri.csv"
    code, stdout, err = cli(["quality", "--ckpt", ckpt, "--method", "ri", "--out", out, faces])
    assert code == 0 and "of 3 of 4 image(s)" in stdout
    assert "skipped 1 unreadable" in err and "broken.png" in err
    rows = read_csv(out.read_text())
    assert [Path(r["path"]).relative_to(faces).as_posix() for r in rows] == ["a.png", "sub/b.png", "sub/c.jpg"]
    model, pre, _ = load_model(ckpt)
    img = cv2.cvtColor(cv2.imread(str(faces / "sub/b.png")), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        expected = float(model(pre.to_tensor(img)).quality)
    assert float(rows[1]["quality"]) == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("method", ["norm", "nan", "serfiq"])
def test_other_scorers_print_csv_without_out(ckpt, faces, method, cli):
    code, stdout, _ = cli(["quality", "--ckpt", ckpt, "--method", method, faces / "sub", faces / "a.png"])
    rows = read_csv(stdout)
    assert code == 0 and [Path(r["path"]).name for r in rows] == ["b.png", "c.jpg", "a.png"]
    q = [float(r["quality"]) for r in rows]
    assert all(math.isfinite(v) for v in q) and len(set(q)) == 3  # different images, different scores
    if method == "serfiq":
        assert all(0 < v <= 1 for v in q)


@pytest.fixture(scope="module")
def arcface_ckpt(ckpt, tmp_path_factory) -> Path:
    """The tiny model as 'vlrface train' writes it: no PRM, an arcface head with 3 class centres."""
    torch.manual_seed(0)
    cfg = {**load_checkpoint(ckpt)["config"]["model"], "pam": False, "prm": False}
    path = tmp_path_factory.mktemp("arc") / "m.pt"
    model = build_model(cfg).eval()
    objective = {"head.weight": torch.randn(3, cfg["embedding_size"])}
    atomic_save(
        make_checkpoint(
            model=model,
            config={"model": cfg, "head": {"name": "arcface"}},
            preprocessing=Preprocessing(),
            objective=objective,
        ),
        path,
    )
    return path


def test_crfiqa_uses_the_head_of_a_trained_checkpoint(arcface_ckpt, faces, cli):
    code, stdout, _ = cli(["quality", "--ckpt", arcface_ckpt, "--method", "crfiqa", faces / "a.png"])
    (row,) = read_csv(stdout)
    model, pre, ck = load_model(arcface_ckpt)
    img = cv2.cvtColor(cv2.imread(str(faces / "a.png")), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        cos = (
            torch.nn.functional.normalize(model(pre.to_tensor(img)).embedding, dim=1)
            @ torch.nn.functional.normalize(ck["objective"]["head.weight"], dim=1).T
        )
    c1, c2 = cos[0].sort(descending=True).values[:2].tolist()
    assert code == 0 and float(row["quality"]) == pytest.approx(c1 / (c2 + 1), rel=1e-4)


@pytest.mark.parametrize(
    "which, method, message",
    [
        ("tiny", "crfiqa", "has none"),
        ("tiny", "magface", "use the norm scorer"),
        ("arcface", "ri", "trained without"),
        ("tiny", "brisque", "unknown quality scorer 'brisque'"),
    ],
)
def test_scorer_and_checkpoint_mismatches_are_user_errors(ckpt, arcface_ckpt, faces, which, method, message, cli):
    path = ckpt if which == "tiny" else arcface_ckpt
    code, _, err = cli(["quality", "--ckpt", path, "--method", method, faces])
    assert code == 2 and message in err and "Traceback" not in err


def test_no_readable_image_is_a_user_error(ckpt, faces, cli):
    code, _, err = cli(["quality", "--ckpt", ckpt, "--method", "norm", faces / "broken.png"])
    assert code == 2 and "no readable face image among 1 input(s)" in err
