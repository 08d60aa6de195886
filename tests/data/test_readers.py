"""Readers: image folders, ORL/AT&T, skip-and-count, face crops, the lfw-vlr split."""

import cv2
import numpy as np
import pytest

from vlrface.data.readers import CROPS, SkipReport, lfw_vlr_split, read_att, read_image, read_image_folder, to_face
from vlrface.data.synth import TEMPLATE
from vlrface.errors import UserError


def test_read_image_colour_grey_and_bad(tiny_folder):
    skips = SkipReport()
    bgr = cv2.imread(str(tiny_folder / "alice" / "0.png"))
    rgb = read_image(tiny_folder / "alice" / "0.png", skips)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])  # RGB order
    grey = read_image(tiny_folder / "bob" / "0.pgm", skips)
    assert grey.shape == (50, 50, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert read_image(tiny_folder / "alice" / "broken.jpg", skips) is None
    assert read_image(tiny_folder / "bob" / "empty.png", skips) is None
    assert read_image(tiny_folder / "nobody.png", skips) is None
    assert len(skips) == 3
    assert [r for _, r in skips.skipped][:2] == ["not a decodable image", "empty file"]
    assert skips.summary().startswith("skipped 3 unreadable image(s): ")


def test_skip_report_prints_one_line(capsys):
    skips = SkipReport()
    skips.print_summary()
    assert capsys.readouterr().err == ""  # nothing to report, nothing printed
    for i in range(5):
        skips.add(f"f{i}.jpg", "empty file")
    skips.print_summary()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 5" in err and "and 2 more" in err


def test_read_image_folder(tiny_folder):
    images = read_image_folder(tiny_folder)
    assert images.names == ["alice", "bob"]
    assert [p.name for p in images.paths] == ["0.png", "1.png", "broken.jpg", "0.pgm", "1.pgm", "empty.png"]
    assert images.labels == [0, 0, 0, 1, 1, 1]
    only_bob = images.select(["bob"])
    assert only_bob.names == ["bob"] and only_bob.labels == [0, 0, 0]


def test_read_image_folder_wrong_layout(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_image_folder(tmp_path / "missing")
    cv2.imwrite(str(tmp_path / "flat.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="no sub-folders"):
        read_image_folder(tmp_path)
    (tmp_path / "someone").mkdir()
    with pytest.raises(UserError, match="no images"):
        read_image_folder(tmp_path)


def test_read_att_layout(tmp_path):
    for k in (1, 2, 10):
        (tmp_path / f"s{k}").mkdir()
        for n in (1, 2, 10):
            cv2.imwrite(str(tmp_path / f"s{k}" / f"{n}.pgm"), np.full((112, 92), n, np.uint8))
    att = read_att(tmp_path)
    assert att.names[:2] == ["s1", "s2"] and att.names[9] == "s10"
    assert [p.relative_to(tmp_path).as_posix() for p in att.paths[:3]] == ["s1/1.pgm", "s1/2.pgm", "s1/10.pgm"]
    assert sorted(set(att.labels)) == [0, 1, 9]  # subject K → label K−1
    sub = read_att(tmp_path, subjects=[2, 10])
    assert sub.names == ["s2", "s10"] and sub.labels == [0, 0, 0, 1, 1, 1]
    with pytest.raises(UserError, match="s3"):
        read_att(tmp_path, subjects=[3])


def _landmark_image(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    img = np.zeros((*shape, 3), np.uint8)
    for x, y in points:
        cv2.circle(img, (round(x), round(y)), 2, (255, 255, 255), -1)
    return img


@pytest.mark.parametrize(
    "crop, shape, points",
    [
        ("lfw", (250, 250), [[102.9, 114.0], [149.1, 112.9], [126.6, 138.0], [108.5, 159.2], [146.9, 158.1]]),
        ("att", (112, 92), [[26.0, 52.6], [61.0, 52.3], [43.3, 71.3], [30.1, 85.4], [59.2, 84.8]]),
    ],
)
def test_crops_put_measured_landmarks_on_the_template(crop, shape, points):
    """Each documented crop maps its layout's median landmarks to the arcface template (±3 px)."""
    face = to_face(_landmark_image(shape, np.array(points)), crop)
    assert face.shape == (112, 112, 3) and face.dtype == np.uint8
    for tx, ty in TEMPLATE:
        y0, x0 = int(ty) - 3, int(tx) - 3
        assert face[y0 : y0 + 7, x0 : x0 + 7].max() > 100, (crop, tx, ty)


def test_default_crop_and_registry():
    assert set(CROPS.names()) >= {"default", "lfw", "att"}
    assert to_face(np.zeros((30, 40, 3), np.uint8)).shape == (112, 112, 3)
    with pytest.raises(UserError, match="unknown face crop"):
        to_face(np.zeros((30, 40, 3), np.uint8), "nope")


@pytest.mark.shared
def test_real_att(shared):
    att = read_att(shared("att_faces"))
    assert len(att) == 400 and len(att.names) == 40 and att.names[39] == "s40"
    img = read_image(att.paths[0])
    assert img.shape == (112, 92, 3)


@pytest.mark.shared
def test_lfw_vlr_split_counts(shared):
    root = shared("lfw")
    train, test = lfw_vlr_split(root)
    assert len(test) == 106 and len(train) == 5643
    assert not set(train) & set(test)
    assert "README" not in train
    people = read_image_folder(root)
    counts = dict(zip(people.names, np.bincount(people.labels)))
    assert sum(counts[n] >= 5 for n in counts) == 423
    assert all(counts[n] >= 5 for n in test)
