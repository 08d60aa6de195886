import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlrface.cli import main
from vlrface.serve.gallery import Gallery

LFW = Path(__file__).resolve().parents[2] / "../shared/data/lfw"


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def write_face(path: Path, seed: int, size: int = 96) -> Path:
    img = np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC))
    return path


@pytest.fixture
def folder(tmp_path):
    for who, seeds in {"ann": (1, 2), "ben": (3,), "cat": (4,)}.items():
        for s in seeds:
            write_face(tmp_path / "gal" / who / f"{s}.png", s)
    return tmp_path / "gal"


def test_identify_builds_once_then_reuses_the_gallery(ckpt, folder, tmp_path, capsys):
    gdir = tmp_path / "g"
    code, out, err = run(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder], capsys)
    assert code == 0 and "4 images of 3 identities" in out
    assert Gallery.load(gdir).identities == {"ann": 2, "ben": 1, "cat": 1}
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    probes = [folder / "ben/3.png", folder / "ann/2.png", bad]
    code, out, err = run(["identify", "--ckpt", ckpt, "--gallery", gdir, "--top", 2, "--json",
                          "--quality-threshold", 1e9, "--probe", *probes], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [r["identity"] for r in rows] == ["ben", "ann"]  # the enrolled images themselves
    assert all(r["score"] == pytest.approx(1.0, abs=1e-5) and r["low_quality"] for r in rows)
    assert len(rows[0]["candidates"]) == 2
    assert "skipped 1 unreadable" in err and "broken.jpg" in err  # reported, not silently dropped
    code, out, _ = run(["identify", "--ckpt", ckpt, "--gallery", gdir, "--threshold", 1.01, "--probe", folder / "cat"], capsys)
    assert code == 0 and "unknown" in out and "cat(1.00)" in out  # the table lists the candidates anyway


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no gallery in"),
        (["--build", "no/such/folder"], "image folder not found"),
        (["--index", "kdtree", "--build", "."], "unknown gallery index 'kdtree'"),
    ],
)
def test_identify_user_mistakes_are_one_line_exit_2(ckpt, tmp_path, capsys, extra, message):
    code, _, err = run(["identify", "--ckpt", ckpt, "--gallery", tmp_path / "none", "--probe", ckpt, *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_gallery_from_another_checkpoint_is_refused(ckpt, folder, tmp_path, capsys):
    gdir = tmp_path / "g"
    assert run(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder], capsys)[0] == 0
    other = tmp_path / "other.pt"
    shutil.copy(ckpt, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # a different file: a different hash
    code, _, err = run(["identify", "--ckpt", other, "--gallery", gdir, "--probe", folder], capsys)
    assert code == 2 and "another checkpoint" in err


def test_align_writes_crops_and_reports_images_without_a_face(tmp_path, capsys):
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    src = tmp_path / "in"
    for p in sorted(LFW.glob("Ab*/*_0001.jpg"))[:2]:
        (src / p.parent.name).mkdir(parents=True)
        shutil.copy(p, src / p.parent.name / p.name)
    cv2.imwrite(str(src / "blank.png"), np.full((160, 160, 3), 127, np.uint8))
    out = tmp_path / "out"
    code, stdout, err = run(["align", src, "--out", out], capsys)
    assert code == 0 and "aligned 2 face(s) from 2 of 3 image(s)" in stdout
    crops = sorted(out.rglob("*.png"))
    assert len(crops) == 2 and all(cv2.imread(str(c)).shape == (112, 112, 3) for c in crops)
    assert crops[0].parent.parent == out  # folder layout kept: out/Name/Name_0001.png
    assert "no face found in 1 image(s)" in err and "blank.png" in (out / "no_face.txt").read_text()


def test_identify_with_align_on_whole_photos(ckpt, tmp_path, capsys):
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    people = sorted(p for p in LFW.glob("Ab*") if len(list(p.iterdir())) >= 2)[:2]
    for person in people:
        (tmp_path / "gal" / person.name).mkdir(parents=True)
        shutil.copy(sorted(person.iterdir())[0], tmp_path / "gal" / person.name)
    probe = sorted(people[1].iterdir())[0]
    code, out, err = run(["identify", "--ckpt", ckpt, "--gallery", tmp_path / "g", "--build", tmp_path / "gal",
                          "--align", "--json", "--probe", probe], capsys)
    assert code == 0, err
    row = json.loads(out.split("\n", 1)[1])[0]
    assert row["identity"] == people[1].name and row["score"] == pytest.approx(1.0, abs=1e-5)
