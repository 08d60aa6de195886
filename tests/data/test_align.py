import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlrface.data.align import ARCFACE_TEMPLATE, YuNetDetector, align, similarity_transform
from vlrface.data.readers import read_image

LFW = Path(__file__).resolve().parents[2] / "../shared/data/lfw"


def apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_transform_recovers_a_known_similarity():
    theta, s, t = np.deg2rad(23.0), 1.7, np.array([12.0, -5.0])
    rot = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = ARCFACE_TEMPLATE @ rot.T + t
    m = similarity_transform(ARCFACE_TEMPLATE, dst)
    np.testing.assert_allclose(m, np.hstack([rot, t[:, None]]), atol=1e-9)
    # round trip: the inverse maps the points back
    back = similarity_transform(dst, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(apply(back, apply(m, ARCFACE_TEMPLATE)), ARCFACE_TEMPLATE, atol=1e-9)


def test_noisy_fit_matches_opencv_least_squares():
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE * 2.3 + rng.normal(0, 4, (5, 2)) + 40
    m = similarity_transform(src, ARCFACE_TEMPLATE)
    # OpenCV as an independent reference: every point an inlier, then its Levenberg–Marquardt refinement
    ref, inliers = cv2.estimateAffinePartial2D(src, ARCFACE_TEMPLATE, ransacReprojThreshold=1e3, refineIters=100)
    assert inliers.all()
    np.testing.assert_allclose(m, ref, atol=1e-4)
    assert np.isclose(m[0, 0], m[1, 1]) and np.isclose(m[0, 1], -m[1, 0])  # no shear, no reflection


def test_reflection_is_never_returned():
    mirrored = ARCFACE_TEMPLATE * np.array([-1.0, 1.0])
    m = similarity_transform(ARCFACE_TEMPLATE, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_align_puts_landmarks_on_the_template():
    img = np.zeros((300, 400, 3), np.uint8)
    pts = ARCFACE_TEMPLATE * 1.5 + np.array([150.0, 60.0])
    for (x, y), c in zip(pts, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]):
        cv2.circle(img, (round(x), round(y)), 4, c, -1)
    crop = align(img, pts)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for (x, y), c in zip(ARCFACE_TEMPLATE, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]):
        assert np.abs(crop[round(y), round(x)].astype(int) - c).max() < 60


def test_yunet_finds_lfw_faces_and_alignment_puts_eyes_on_template():
    if not LFW.is_dir():
        pytest.skip(f"real LFW images not found at {LFW.resolve()} (shared data is absent on user machines)")
    det = YuNetDetector()
    paths = sorted(LFW.glob("A*/*_0001.jpg"))[:6]
    eye_err = []
    for p in paths:
        img = read_image(p)
        faces = det.detect(img)
        assert faces, f"no face in {p}"
        assert all(a.area >= b.area for a, b in itertools.pairwise(faces))
        crop = det.detect_and_align(img)[0]
        again = det.detect(crop)  # independent check: detect again on the aligned crop
        assert again, f"no face after aligning {p}"
        eye_err.append(np.abs(again[0].landmarks[:2] - ARCFACE_TEMPLATE[:2]).max())
    assert np.median(eye_err) < 5.0, eye_err


def test_no_face_gives_empty_list():
    assert YuNetDetector().detect_and_align(np.full((200, 200, 3), 128, np.uint8)) == []
