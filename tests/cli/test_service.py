import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlrface.serve.gallery import Gallery

LFW = Path(__file__).resolve().parents[2] / "../shared/data/lfw"


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


def test_identify_builds_once_then_reuses_the_gallery(ckpt, folder, tmp_path, cli):
    gdir = tmp_path / "g"
    code, out, err = cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder])
    assert code == 0 and "4 images of 3 identities" in out
    assert Gallery.load(gdir).identities == {"ann": 2, "ben": 1, "cat": 1}
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    probes = [folder / "ben/3.png", folder / "ann/2.png", bad]
    code, out, err = cli(
        [
            "identify",
            "--ckpt",
            ckpt,
            "--gallery",
            gdir,
            "--top",
            2,
            "--json",
            "--quality-threshold",
            1e9,
            "--probe",
            *probes,
        ]
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["identity"] for r in rows] == ["ben", "ann"]  # the enrolled images themselves
    assert all(r["score"] == pytest.approx(1.0, abs=1e-5) and r["low_quality"] for r in rows)
    assert len(rows[0]["candidates"]) == 2
    assert "skipped 1 unreadable" in err and "broken.jpg" in err  # reported, not silently dropped
    code, out, _ = cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--threshold", 1.01, "--probe", folder / "cat"])
    assert code == 0 and "unknown" in out and "cat(1.00)" in out  # the table lists the candidates anyway


def test_identify_with_the_nac_matcher(ckpt, folder, tmp_path, cli):
    gdir = tmp_path / "g"
    assert cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder])[0] == 0
    code, out, _ = cli(
        [
            "identify",
            "--ckpt",
            ckpt,
            "--gallery",
            gdir,
            "--json",
            "--matcher",
            "nac",
            "--nac-temperature",
            0.01,
            "--threshold",
            0.0,
            "--probe",
            folder / "ben",
        ]
    )
    (row,) = json.loads(out)
    assert code == 0 and row["identity"] == "ben" and 0 < row["score"] <= 1  # a probability, not a cosine
    assert sum(c["score"] for c in row["candidates"]) == pytest.approx(
        1.0, abs=1e-5
    )  # 3 identities ≤ k: the full softmax
    code, _, err = cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--matcher", "knn", "--probe", folder])
    assert code == 2 and "unknown matcher 'knn'" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no gallery in"),
        (["--build", "no/such/folder"], "image folder not found"),
        (["--index", "kdtree", "--build", "."], "unknown gallery index 'kdtree'"),
    ],
)
def test_identify_user_mistakes_are_one_line_exit_2(ckpt, tmp_path, cli, extra, message):
    code, _, err = cli(["identify", "--ckpt", ckpt, "--gallery", tmp_path / "none", "--probe", ckpt, *extra])
    assert code == 2 and message in err and err.count("\n") == 1


def test_gallery_from_another_checkpoint_is_refused(ckpt, folder, tmp_path, cli):
    gdir = tmp_path / "g"
    assert cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder])[0] == 0
    other = tmp_path / "other.pt"
    shutil.copy(ckpt, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # a different file: a different hash
    code, _, err = cli(["identify", "--ckpt", other, "--gallery", gdir, "--probe", folder])
    assert code == 2 and "another checkpoint" in err


def test_align_writes_crops_and_reports_images_without_a_face(tmp_path, cli):
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    src = tmp_path / "in"
    for p in sorted(LFW.glob("Ab*/*_0001.jpg"))[:2]:
        (src / p.parent.name).mkdir(parents=True)
        shutil.copy(p, src / p.parent.name / p.name)
    cv2.imwrite(str(src / "blank.png"), np.full((160, 160, 3), 127, np.uint8))
    out = tmp_path / "out"
    code, stdout, err = cli(["align", src, "--out", out])
    assert code == 0 and "aligned 2 face(s) from 2 of 3 image(s)" in stdout
    crops = sorted(out.rglob("*.png"))
    assert len(crops) == 2 and all(cv2.imread(str(c)).shape == (112, 112, 3) for c in crops)
    assert crops[0].parent.parent == out  # folder layout kept: out/Name/Name_0001.png
    assert "no face found in 1 image(s)" in err and "blank.png" in (out / "no_face.txt").read_text()


def test_identify_with_align_on_whole_photos(ckpt, tmp_path, cli):
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    people = sorted(p for p in LFW.glob("Ab*") if len(list(p.iterdir())) >= 2)[:2]
    for person in people:
        (tmp_path / "gal" / person.name).mkdir(parents=True)
        shutil.copy(sorted(person.iterdir())[0], tmp_path / "gal" / person.name)
    probe = sorted(people[1].iterdir())[0]
    code, out, err = cli(
        [
            "identify",
            "--ckpt",
            ckpt,
            "--gallery",
            tmp_path / "g",
            "--build",
            tmp_path / "gal",
            "--align",
            "--json",
            "--probe",
            probe,
        ]
    )
    assert code == 0, err
    row = json.loads(out.split("\n", 1)[1])[0]
    assert row["identity"] == people[1].name and row["score"] == pytest.approx(1.0, abs=1e-5)


def test_align_with_given_landmarks_puts_them_on_the_template(tmp_path, cli):
    from vlrface.data.align import ARCFACE_TEMPLATE

    # five coloured dots at a rotated, scaled, shifted copy of the template; alignment must undo the motion
    angle, scale, shift = np.deg2rad(12), 1.6, np.array([40.0, 25.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rot.T + shift
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    img = np.zeros((260, 260, 3), np.uint8)
    for (x, y), c in zip(points, colours):
        cv2.circle(img, (round(x), round(y)), 5, c[::-1], -1)  # BGR on disk
    (tmp_path / "a").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "dots.png"), img)
    lm = tmp_path / "lm.txt"
    lm.write_text(
        "# image x1 y1 ... x5 y5\n"
        + "a/dots.png "
        + " ".join(f"{v:.2f}" for v in points.ravel())
        + "\n"
        + "a/gone.png,1,2,3,4,5,6,7,8,9,10\n"
    )
    code, out, err = cli(["align", "--landmarks", lm, "--out", tmp_path / "out"])
    assert code == 0 and "aligned 1 face(s) from 1 of 2 image(s)" in out and "gone.png" in err
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "a" / "dots.png")), cv2.COLOR_BGR2RGB)  # layout kept
    for (x, y), c in zip(ARCFACE_TEMPLATE, colours):
        assert tuple(crop[round(y), round(x)]) == c


@pytest.mark.parametrize(
    "args, message",
    [
        (["--landmarks", "lm.txt", "x.png"], "either INPUT... (faces are detected) or --landmarks FILE"),
        ([], "either INPUT..."),
        (["--landmarks", "lm.txt"], "lm.txt:2: expected 'IMAGE x1 y1"),
        (["--landmarks", "none.txt"], "cannot read landmark file"),
    ],
)
def test_align_user_mistakes(tmp_path, monkeypatch, cli, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lm.txt").write_text("a.png 1 2 3 4 5 6 7 8 9 10\nb.png 1 2 3\n")
    code, _, err = cli(["align", "--out", "o", *args])
    assert code == 2 and message in err and err.count("\n") == 1


def test_identify_hnsw_gallery_and_a_probe_list(ckpt, folder, tmp_path, cli):
    gdir = tmp_path / "g"
    assert cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--build", folder, "--index", "hnsw"])[0] == 0
    assert Gallery.load(gdir).index_type == "hnsw"
    (tmp_path / "probes.txt").write_text("gal/cat/4.png\ngal/missing.png\n")
    code, out, err = cli(["identify", "--ckpt", ckpt, "--gallery", gdir, "--json", tmp_path / "probes.txt"])
    rows = json.loads(out)
    assert code == 0 and [r["identity"] for r in rows] == ["cat"] and "missing.png" in err


def test_serve_options_reach_the_app(ckpt, tmp_path, monkeypatch, cli):
    """--index, --quality-threshold and --align are wired through (the real server is tested in tests/serve)."""
    import uvicorn
    from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append((app, kw)))
    code, _, err = cli(
        ["serve", "--ckpt", ckpt, "--index", "hnsw", "--quality-threshold", 1e9, "--align", "--port", 8123]
    )
    assert code == 0 and "enrolments live in memory" in err and apps[0][1]["port"] == 8123
    client = TestClient(apps[0][0])
    assert client.get("/gallery").json()["index"] == "hnsw"
    blank = cv2.imencode(".png", np.full((160, 160, 3), 127, np.uint8))[1].tobytes()
    r = client.post("/identify", files={"image": ("blank.png", blank, "image/png")})
    assert r.status_code == 422 and "no face found" in r.json()["detail"]
    if LFW.is_dir():
        photo = sorted(LFW.glob("Ab*/*_0001.jpg"))[0].read_bytes()
        assert client.post("/gallery/ann", files={"image": ("a.jpg", photo, "image/jpeg")}).status_code == 201
        hit = client.post("/identify", files={"image": ("a.jpg", photo, "image/jpeg")}).json()
        assert hit["identity"] == "ann" and hit["low_quality"]  # the --quality-threshold default applies
    assert cli(["serve", "--ckpt", ckpt, "--index", "kdtree"])[0] == 2
