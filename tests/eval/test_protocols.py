"""Each protocol on a tiny data set written in its real layout, plus wrong-layout errors.

Same-identity images share a smooth pattern, so the raw-pixel baseline must
find every mate at full resolution: a wrong id parse or split shows up.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from vlrface.errors import UserError
from vlrface.eval.embed import RawPixelEmbedder
from vlrface.eval.matchers import MATCHERS
from vlrface.eval.protocols import PROTOCOLS, held_out_people

raw = RawPixelEmbedder()


def load(name: str, root: Path):
    return PROTOCOLS.build(name).load(root)


def test_registry_lists_every_protocol():
    assert set(PROTOCOLS.names()) == {
        "att-vlr",
        "lfw-vlr",
        "att-vlr-open",
        "lfw-vlr-open",
        "tinyface",
        "scface",
        "survface-openset",
        "survface-verification",
        "lfw-pairs",
        "folders",
    }


def test_att_vlr(att_root):
    proto = load("att-vlr", att_root)
    assert len(proto.gallery) == 20 and len(proto.probes) == 40
    assert {p.parent.name for p in proto.gallery} == {f"s{k}" for k in range(21, 41)}
    res = proto.run(raw)
    assert list(res) == ["hr", "16px", "12px", "8px"]
    hr = res["hr"]
    assert hr["cmc"][1] == 1.0 and hr["n_probes"] == 40 and hr["n_gallery"] == 20
    assert hr["verification"]["n_genuine"] == 40 and hr["verification"]["n_impostor"] == 40 * 19
    assert "open_set" not in hr
    assert list(proto.run(raw, [10])) == ["10px"]


def test_att_vlr_open_holds_out_a_fixed_share_of_test_subjects(att_root):
    proto = load("att-vlr-open", att_root)
    closed = load("att-vlr", att_root)
    out = held_out_people(closed.gallery_ids)
    assert len(out) == 6 and out == held_out_people(closed.gallery_ids)  # round(0.3 · 20), seeded
    assert out <= set(closed.gallery_ids) and not out & set(proto.gallery_ids)
    assert len(proto.gallery) == 14 and proto.probes == closed.probes  # probes unchanged: 6 × 2 now unmated
    res = proto.run(raw, [None], MATCHERS.build("nac"))
    hr = res["hr"]
    assert hr["n_mated"] == 28 and hr["open_set"]["n_unmated"] == 12 and hr["matcher"] == "nac"
    assert set(hr["open_set"]["dir_at_far"]) == {0.1, 0.01} and hr["cmc"][1] == 1.0


def test_pair_protocols_refuse_a_matcher(tmp_path, write_face):
    with pytest.raises(UserError, match="no gallery"):
        PROTOCOLS.build("lfw-pairs").run(raw, None, MATCHERS.build("cosine"))


def test_att_vlr_wrong_layout(att_root):
    (att_root / "s30" / "1.pgm").unlink()
    with pytest.raises(UserError, match=re.escape("1.pgm for s30")):
        load("att-vlr", att_root)
    for f in (att_root / "s25").iterdir():
        f.unlink()
    (att_root / "s25").rmdir()
    with pytest.raises(UserError, match="s25"):
        load("att-vlr", att_root)


def test_lfw_vlr_split_and_gallery(tmp_path, write_face):
    counts = {"P0": 12, "P1": 5, "P2": 6, "P3": 7, "P4": 5, "P5": 1, "Q0": 2}  # ≥5: P0..P4 → test P0, P4
    for i, (name, n) in enumerate(counts.items()):
        for k in range(1, n + 1):
            write_face(tmp_path / name / f"{name}_{k:04d}.jpg", i, k, (250, 250))
    proto = load("lfw-vlr", tmp_path)
    assert [p.name for p in proto.gallery] == ["P0_0001.jpg", "P4_0001.jpg"]
    assert len(proto.probes) == 10 + 4 and proto.probes[-1].name == "P4_0005.jpg"
    res = proto.run(raw, [None])
    assert list(res) == ["hr"] and res["hr"]["cmc"][1] == 1.0


@pytest.mark.parametrize("name", ["lfw-vlr", "lfw-vlr-open"])
def test_lfw_vlr_refuses_another_layout(att_root, name):
    """An ORL/AT&T folder (sK/N.pgm, ≥ 5 images each) is no LFW: it used to be split and reported as 'LFW'."""
    with pytest.raises(UserError, match=re.escape("not in LFW's layout Name/Name_NNNN.jpg (it has s1/1.pgm)")):
        load(name, att_root)


def test_lfw_vlr_real_counts(shared):
    proto = load("lfw-vlr", shared("lfw"))
    assert len(proto.gallery) == 106 and len(proto.probes) == 727


def test_att_vlr_real_counts(shared):
    proto = load("att-vlr", shared("att_faces"))
    assert len(proto.gallery) == 20 and len(proto.probes) == 180


def test_tinyface(tmp_path, write_face):
    t = tmp_path / "Testing_Set"
    for i in (1, 12, 123):  # 'ID_k': 12_1 must not match 1_ or 123_
        write_face(t / "Probe" / f"{i}_1.jpg", i, 1, (20, 16))
        write_face(t / "Gallery_Match" / f"{i}_2.jpg", i, 2, (24, 20))
    for n in range(5):
        write_face(t / "Gallery_Distractor" / f"{n}.jpg", 500 + n, 0, (24, 20))
    proto = load("tinyface", tmp_path)
    assert sorted(proto.gallery_ids[:3]) == ["1", "12", "123"] and proto.probe_ids == proto.gallery_ids[:3]
    res = proto.run(raw)["test"]
    assert res["n_gallery"] == 8 and res["cmc"][1] == 1.0 and res["map"] == 1.0
    (t / "Gallery_Distractor" / "0.jpg").rename(t / "x.jpg")
    for f in (t / "Gallery_Distractor").iterdir():
        f.unlink()
    (t / "Gallery_Distractor").rmdir()
    with pytest.raises(UserError, match="Gallery_Distractor"):
        load("tinyface", tmp_path)


def test_scface(tmp_path, write_face):
    for i in (10, 51, 52, 130):  # 010 is a training ID: ignored
        write_face(tmp_path / "mugshot_frontal_cropped_all" / f"{i:03d}_frontal.JPG", i, 0, (60, 48))
        for d in (1, 2, 3):
            for cam in (1, 5, 6):  # cam6 is not a visible camera: ignored
                write_face(
                    tmp_path / f"surveillance_cameras_distance_{d}" / f"cam{cam}" / f"{i:03d}_cam{cam}_{d}.jpg",
                    i,
                    10 * d + cam,
                    (30, 24),
                )
    proto = load("scface", tmp_path)
    assert proto.gallery_ids == [51, 52, 130]
    res = proto.run(raw)
    assert list(res) == ["d1", "d2", "d3"]
    assert all(r["n_probes"] == 6 and r["cmc"][1] == 1.0 for r in res.values())
    assert list(proto.run(raw, [8])) == ["d1@8px", "d2@8px", "d3@8px"]
    for f in (tmp_path / "surveillance_cameras_distance_3").rglob("*.jpg"):
        f.rename(f.with_name(f.name.replace("cam1", "cam9").replace("cam5", "cam9")))
    with pytest.raises(UserError, match="distance_3"):
        load("scface", tmp_path)


def test_survface_openset(tmp_path, write_face):
    b = tmp_path / "Face_Identification_Test_Set"
    for i in range(1, 6):
        write_face(b / "gallery" / f"{i}_1.jpg", i, 1, (24, 20))
        write_face(b / "mated_probe" / f"{i}_2.jpg", i, 2, (16, 14))
    for i in range(1, 9):  # unmated names may reuse ID prefixes: they are non-mated by folder
        write_face(b / "unmated_probe" / f"{i}_9.jpg", 100 + i, 9, (16, 14))
    res = load("survface-openset", tmp_path).run(raw)["test"]
    assert res["n_mated"] == 5 and res["open_set"]["n_unmated"] == 8
    assert res["open_set"]["tpir_at_fpir"] == {0.3: 1.0, 0.2: 1.0, 0.1: 1.0}
    with pytest.raises(UserError, match="unmated_probe"):
        for f in (b / "unmated_probe").iterdir():
            f.unlink()
        (b / "unmated_probe").rmdir()
        load("survface-openset", tmp_path)


def test_survface_verification_csv_and_mat(tmp_path, write_face):
    b = tmp_path / "Face_Verification_Test_Set"
    for i in range(4):
        for k in (1, 2):
            write_face(b / "verification_images" / f"{i}_{k}.jpg", i, k, (20, 16))
    (b / "positive_pairs_names.csv").write_text("".join(f"{i}_1.jpg,{i}_2.jpg\n" for i in range(4)))
    neg = [(f"{i}_1.jpg", f"{(i + 1) % 4}_2.jpg") for i in range(4)]
    scipy_io = pytest.importorskip("scipy.io")
    cells = np.empty((4, 2), dtype=object)
    cells[:] = neg
    scipy_io.savemat(str(b / "negative_pairs_names.mat"), {"negative_pairs_names": cells})
    res = load("survface-verification", tmp_path).run(raw)["test"]
    assert res["n_pairs"] == 8
    v = res["verification"]
    assert (v["n_genuine"], v["n_impostor"], v["auc"]) == (4, 4, 1.0)
    (b / "negative_pairs_names.mat").unlink()
    with pytest.raises(UserError, match="negative_pairs_names"):
        load("survface-verification", tmp_path)


def test_lfw_pairs(tmp_path, write_face):
    for i, name in enumerate(["Ann", "Bob"]):
        for k in (1, 2):
            write_face(tmp_path / name / f"{name}_{k:04d}.jpg", i, k, (250, 250))
    (tmp_path / "pairs.txt").write_text("1 2\nAnn 1 2\nBob 1 2\nAnn 1 Bob 2\nBob 1 Ann 2\n")
    res = load("lfw-pairs", tmp_path).run(raw, [None, 12])
    assert res["test"]["verification"]["auc"] == 1.0 and set(res) == {"test", "12px"}
    (tmp_path / "pairs.txt").write_text("Ann 1 3\n")
    with pytest.raises(UserError, match="missing"):
        load("lfw-pairs", tmp_path)


def test_folders_open_set(tmp_path, write_face):
    for i, name in enumerate(["a", "b", "c"]):
        write_face(tmp_path / "gallery" / name / "g.png", i, 0)
        write_face(tmp_path / "probe" / name / "p.png", i, 1)
    write_face(tmp_path / "probe" / "zed" / "p.png", 99, 1)
    res = load("folders", tmp_path).run(raw)["test"]
    assert res["cmc"][1] == 1.0 and res["n_mated"] == 3 and res["open_set"]["n_unmated"] == 1
    with pytest.raises(UserError, match="gallery"):
        load("folders", tmp_path / "probe")


def test_missing_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load("att-vlr", tmp_path / "nope")
