"""Procedural synthetic faces: the embedded default data set.

An identity is a vector of :data:`FEATURES` in ``[0, 1)`` drawn from
``(seed, identity)``; an image is that identity rendered with per-image
nuisance (pose, illumination, expression, occlusion, noise, background) drawn
from ``(seed, identity, index)``. Both are pure functions of their keys, so any
image can be regenerated anywhere (data-loader workers, another machine)
without storing it.

Faces are drawn with anti-aliased OpenCV primitives directly on the aligned
112×112 arcface canvas: at neutral pose the eyes, nose tip and mouth corners
sit near the arcface template, so models and alignment code see the same
geometry as on real aligned faces.

Identities differ mostly in *fine* geometry (eye spacing and size, brows, nose,
mouth, accessories); coarse cues that survive at 8 px (skin tone, hair colour)
come from small palettes shared by many identities and are perturbed by the
per-image illumination, so very low resolution makes recognition genuinely hard.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

SIZE = 112
SHIFT = 4  # OpenCV fixed-point bits: sub-pixel geometry with integer APIs
_ONE = 1 << SHIFT
_AA = cv2.LINE_AA

FEATURES: tuple[str, ...] = (
    "face_width", "face_length", "jaw", "skin_tone",
    "eye_spacing", "eye_height", "eye_size", "eye_open", "iris_colour",
    "brow_thickness", "brow_height", "brow_slant", "brow_length",
    "nose_length", "nose_width",
    "mouth_width", "mouth_height", "lip_thickness", "mouth_curve", "lip_colour",
    "hair_style", "hair_colour", "hairline",
    "glasses", "beard", "mole", "mole_x", "mole_y", "ear_size",
)  # fmt: skip
_F = {name: i for i, name in enumerate(FEATURES)}

# Small shared palettes (RGB): colour alone cannot tell identities apart.
SKIN = np.array([[236, 200, 170], [224, 178, 140], [198, 148, 110], [160, 110, 80], [110, 75, 55]], np.float32)
HAIR = np.array(
    [[30, 25, 20], [85, 55, 35], [150, 110, 60], [210, 180, 120], [120, 120, 120], [140, 50, 30]], np.float32
)
IRIS = np.array([[70, 45, 25], [60, 110, 170], [80, 120, 70], [110, 110, 115]], np.float32)
HAIR_STYLES = 6  # bald, short, long, fringe, side parting, bun-top

# Coordinates of the arcface template (left eye, right eye, nose, mouth corners).
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1) - 0.5


def _lerp(u: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(u)


def _fx(v: float) -> int:
    """Pixel coordinate → OpenCV fixed point."""
    return round(v * _ONE)


def _pt(x: float, y: float) -> tuple[int, int]:
    return _fx(x), _fx(y)


def _ellipse(
    img: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    colour,
    angle: float = 0.0,
    thickness: int = -1,
    start: float = 0,
    end: float = 360,
) -> None:
    cv2.ellipse(img, _pt(cx, cy), (max(_fx(ax), 1), max(_fx(ay), 1)), angle, start, end, colour, thickness, _AA, SHIFT)


def _poly(img: np.ndarray, pts: ArrayLike, colour, thickness: int = -1, closed: bool = True) -> None:
    p = np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)
    if thickness < 0:
        cv2.fillPoly(img, [p], colour, _AA, SHIFT)
    else:
        cv2.polylines(img, [p], closed, colour, thickness, _AA, SHIFT)


def _colour(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(c, 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def _palette(table: np.ndarray, u: float) -> np.ndarray:
    return table[min(int(u * len(table)), len(table) - 1)]


class SynthFaces:
    """Deterministic synthetic identities and images.

    ``SynthFaces(seed).render(identity, index)`` is a pure function: the same
    ``(seed, identity, index)`` gives the same uint8 RGB image on any machine.
    """

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError("seed must be non-negative")
        self.seed = int(seed)

    def identity(self, identity: int) -> np.ndarray:
        """The identity's parameter vector (``len(FEATURES)`` values in [0, 1))."""
        return np.random.default_rng((self.seed, 0x1D, int(identity))).random(len(FEATURES))

    def render(self, identity: int, index: int) -> np.ndarray:
        """Image ``index`` of ``identity``: aligned 112×112 RGB uint8."""
        rng = np.random.default_rng((self.seed, 0x1A6E, int(identity), int(index)))
        return _draw(self.identity(identity), rng)

    def batch(self, identities: Sequence[int], indices: Sequence[int]) -> np.ndarray:
        """Images ``[N, 112, 112, 3]`` for paired ``identities[i], indices[i]``."""
        if len(identities) != len(indices):
            raise ValueError("identities and indices must have the same length")
        out = np.empty((len(identities), SIZE, SIZE, 3), np.uint8)
        for k, (i, j) in enumerate(zip(identities, indices)):
            out[k] = self.render(int(i), int(j))
        return out


def _background(rng: np.random.Generator) -> np.ndarray:
    """Two-colour linear gradient with random direction (float32, 0–255)."""
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(a) * _XX + np.sin(a) * _YY + 0.5)[..., None]
    return (c1 + (c2 - c1) * ramp).astype(np.float32)


def _draw(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = lambda name: float(u[_F[name]])  # noqa: E731 — terse feature access
    # ---- per-image nuisance (drawn first, in a fixed order: determinism)
    yaw = rng.uniform(-4.0, 4.0)  # feature shift standing in for head yaw
    roll, scale = rng.uniform(-7, 7), rng.uniform(0.94, 1.06)
    shift = rng.uniform(-2.5, 2.5, 2)
    smile, mouth_open = rng.uniform(-2.0, 2.0), rng.uniform(0, 3.5) * (rng.random() < 0.3)
    blink, brow_raise = rng.uniform(0.45, 1.15), rng.uniform(-2.0, 2.0)
    gain, grad, grad_angle = rng.uniform(0.7, 1.2), rng.uniform(0.0, 0.55), rng.uniform(0, 2 * np.pi)
    cast = rng.uniform(-18, 18, 3)
    noise_std, soft = rng.uniform(0, 6), rng.uniform(0.3, 0.9)
    occlude = rng.random() < 0.25

    skin = _palette(SKIN, f("skin_tone")) + rng.uniform(-8, 8, 3)
    hair = _palette(HAIR, f("hair_colour"))
    img: np.ndarray = _background(rng).astype(np.uint8)  # the cv2 warps below return their MatLike

    cx, cy = SIZE / 2 + yaw * 0.35, 62.0
    fw, fl = _lerp(f("face_width"), 36, 45), _lerp(f("face_length"), 50, 60)
    style = min(int(f("hair_style") * HAIR_STYLES), HAIR_STYLES - 1)
    hairline = _lerp(f("hairline"), 10, 26)

    if style == 2:  # long hair falls behind the face
        _poly(img, [[cx - fw - 8, 20], [cx + fw + 8, 20], [cx + fw + 12, 112], [cx - fw - 12, 112]], _colour(hair))
    _poly(img, [[cx - 14, 95], [cx + 14, 95], [cx + 17, 112], [cx - 17, 112]], _colour(skin * 0.8))  # neck
    ear = _lerp(f("ear_size"), 5, 9)
    for side in (-1, 1):
        _ellipse(img, cx + side * (fw - 1), 60, ear * 0.6, ear, _colour(skin * 0.92))

    # face outline: an ellipse whose lower half narrows towards the chin by `jaw`
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    narrow = 1 - _lerp(f("jaw"), 0.0, 0.35) * np.clip(y, 0, None) ** 2
    face = np.stack([cx + fw * x * narrow, cy + fl * y], 1)
    _poly(img, face, _colour(skin))

    _hair(img, style, hair, cx, fw, hairline)
    if f("beard") < 0.2:  # full beard along the jaw
        beard = face[(face[:, 1] > 78)]
        _poly(img, np.vstack([beard, [[cx + 14, 82], [cx - 14, 82]]]), _colour(hair * 0.9 + 10))
    if f("beard") < 0.35:  # moustache (also on top of a beard)
        mx, my = SIZE / 2 + yaw, _lerp(f("mouth_height"), 89, 95) - 5
        _ellipse(img, mx, my, _lerp(f("mouth_width"), 11, 17), 2.2, _colour(hair))

    ex = SIZE / 2 + yaw
    ey = 51.6 + _lerp(f("eye_height"), -3, 3)
    half = _lerp(f("eye_spacing"), 15.0, 20.0)
    ew = _lerp(f("eye_size"), 5.0, 8.5)
    eh = ew * _lerp(f("eye_open"), 0.38, 0.62) * blink
    iris = _palette(IRIS, f("iris_colour"))
    bt = max(round(_lerp(f("brow_thickness"), 1.2, 4.2)), 1)
    bh, bs, bl = (
        _lerp(f("brow_height"), 7, 12) + brow_raise,
        _lerp(f("brow_slant"), -12, 12),
        _lerp(f("brow_length"), 0.8, 1.3),
    )
    for side in (-1, 1):
        x0 = ex + side * half
        _ellipse(img, x0, ey, ew, eh, (245, 245, 240))
        _ellipse(img, x0 + yaw * 0.2, ey, min(eh, ew * 0.45), min(eh, ew * 0.45), _colour(iris))
        _ellipse(img, x0 + yaw * 0.2, ey, min(eh, ew * 0.2), min(eh, ew * 0.2), (15, 15, 15))
        _ellipse(img, x0, ey, ew, eh, _colour(skin * 0.45), thickness=1, start=180, end=360)
        dy = np.tan(np.radians(bs)) * ew * bl
        brow = [[x0 - side * ew * bl, ey - bh + dy], [x0, ey - bh - 1.5], [x0 + side * ew * bl, ey - bh - dy]]
        _poly(img, brow, _colour(hair * 0.8), thickness=bt, closed=False)

    ny, nw = _lerp(f("nose_length"), 67, 76), _lerp(f("nose_width"), 4.0, 8.5)
    nx = SIZE / 2 + yaw * 1.3
    nose_shade = _colour(skin * 0.72)
    _poly(img, [[ex + yaw * 0.1 - 2, ey + 4], [nx - nw * 0.6, ny - 2], [nx - nw * 0.4, ny + 1]], nose_shade, 1, False)
    _ellipse(img, nx - nw * 0.55, ny + 0.5, nw * 0.3, 1.3, nose_shade)
    _ellipse(img, nx + nw * 0.55, ny + 0.5, nw * 0.3, 1.3, nose_shade)
    _ellipse(img, nx, ny - 1, nw * 0.45, 2.5, _colour(skin * 1.06))

    mx, my = SIZE / 2 + yaw, _lerp(f("mouth_height"), 89, 95)
    mw, lt = _lerp(f("mouth_width"), 11, 17.5), _lerp(f("lip_thickness"), 1.4, 4.0)
    curve = _lerp(f("mouth_curve"), -2.5, 2.5) + smile
    lips = skin * 0.5 + np.array([150, 40, 50], np.float32) * _lerp(f("lip_colour"), 0.2, 0.6)
    xs = np.linspace(-1, 1, 9)
    mid = my - curve * xs**2  # corners rise with a smile
    top = np.stack([mx + mw * xs, mid - lt * (1 - xs**2) - mouth_open / 2], 1)
    bottom = np.stack([mx + mw * xs, mid + lt * 1.2 * (1 - xs**2) + mouth_open / 2], 1)
    _poly(img, np.vstack([top, bottom[::-1]]), _colour(lips))
    if mouth_open > 0.5:
        inner = np.stack([mx + mw * 0.8 * xs, mid], 1)
        gap = np.array([0, mouth_open / 2])
        _poly(img, np.vstack([inner - gap, (inner + gap)[::-1]]), (40, 20, 20))
    else:
        _poly(img, np.stack([mx + mw * xs, mid], 1), _colour(lips * 0.6), 1, False)

    if f("glasses") < 0.25:
        frame = _colour(np.array([20, 20, 20]) if f("glasses") < 0.12 else np.array([150, 120, 60]))
        r = ew + 3.5
        for side in (-1, 1):
            if f("glasses") < 0.06 or 0.12 <= f("glasses") < 0.18:
                _ellipse(img, ex + side * half, ey, r, r * 0.8, frame, thickness=1)
            else:
                x0 = ex + side * half
                _poly(
                    img,
                    [[x0 - r, ey - r * 0.7], [x0 + r, ey - r * 0.7], [x0 + r, ey + r * 0.7], [x0 - r, ey + r * 0.7]],
                    frame,
                    1,
                )
        _poly(img, [[ex - half + r, ey - 1], [ex + half - r, ey - 1]], frame, 1, False)
    if f("mole") < 0.3:
        _ellipse(img, cx + _lerp(f("mole_x"), -22, 22), _lerp(f("mole_y"), 62, 88), 1.3, 1.3, (60, 40, 30))

    if occlude:  # a hand, scarf or object over part of the face
        w, h = rng.uniform(14, 38, 2)
        ox, oy = rng.uniform(10, SIZE - 10), rng.uniform(30, SIZE - 5)
        _ellipse(img, ox, oy, w / 2, h / 2, _colour(rng.uniform(0, 255, 3)), angle=rng.uniform(0, 180))

    # ---- pose, camera softness, illumination, sensor noise
    m: np.ndarray = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), roll, scale)  # float64 [2, 3]
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    img = cv2.GaussianBlur(img, (0, 0), soft)
    light = gain * (1 + grad * (np.cos(grad_angle) * _XX + np.sin(grad_angle) * _YY) * 2)
    out = img.astype(np.float32) * light[..., None] + cast
    out += rng.standard_normal(out.shape, dtype=np.float32) * noise_std
    return np.clip(out, 0, 255).astype(np.uint8)


def _hair(img: np.ndarray, style: int, hair: np.ndarray, cx: float, fw: float, hairline: float) -> None:
    """Hair over the top of the head; ``style`` indexes :data:`HAIR_STYLES`."""
    c = _colour(hair)
    if style == 0:  # bald
        return
    cap = [
        [cx - fw - 2, 48],
        [cx - fw + 2, hairline],
        [cx, hairline - 6],
        [cx + fw - 2, hairline],
        [cx + fw + 2, 48],
        [cx + fw + 4, 0],
        [cx - fw - 4, 0],
    ]
    _poly(img, cap, c)
    if style == 3:  # fringe
        _poly(
            img,
            [
                [cx - fw + 4, hairline],
                [cx + fw - 4, hairline],
                [cx + fw - 10, hairline + 12],
                [cx - fw + 10, hairline + 12],
            ],
            c,
        )
    elif style == 4:  # side parting
        _poly(img, [[cx - fw + 2, hairline], [cx + 6, hairline - 4], [cx - fw + 6, hairline + 18]], c)
    elif style == 5:  # high bun
        _ellipse(img, cx, 2, 14, 9, _colour(hair * 0.85))
    elif style == 2:  # long: strands framing the cheeks
        for side in (-1, 1):
            _poly(
                img,
                [
                    [cx + side * (fw + 2), 30],
                    [cx + side * (fw - 5), 40],
                    [cx + side * (fw - 3), 100],
                    [cx + side * (fw + 8), 100],
                ],
                c,
            )
