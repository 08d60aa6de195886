"""Readers for the dataset layouts users have, and the documented face crops.

Images come back as RGB ``uint8`` HxWx3 (grey files are repeated to three
channels). Unreadable or corrupt files never crash a run and are never
silent: they are counted in a :class:`SkipReport`, which prints one summary
line at the end.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from ..errors import UserError
from ..preprocess import IMAGE_SIZE
from ..registry import Registry

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")
LFW_VLR_MIN_IMAGES = 5  # DESIGN.md §4: people with ≥ 5 images form the test pool
LFW_VLR_TEST_EVERY = 4  # … and every 4th of them (index % 4 == 0) is test-only
ATT_TRAIN_SUBJECTS = range(1, 21)  # att-vlr: subjects 1–20 train, 21–40 test


@dataclass
class SkipReport:
    """Counts unreadable files; ``summary()`` is the one line printed after a run."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    examples: int = 3

    def add(self, path: str | Path, reason: str) -> None:
        self.skipped.append((str(path), reason))

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "all images readable"
        shown = "; ".join(f"{p} ({r})" for p, r in self.skipped[: self.examples])
        more = f" and {len(self.skipped) - self.examples} more" if len(self.skipped) > self.examples else ""
        return f"skipped {len(self.skipped)} unreadable image(s): {shown}{more}"

    def print_summary(self, stream: TextIO | None = None) -> None:
        if self.skipped:
            print(self.summary(), file=stream or sys.stderr)


def read_image(path: str | Path, skips: SkipReport | None = None) -> np.ndarray | None:
    """RGB uint8 HxWx3, or ``None`` (recorded in ``skips``) when the file cannot be decoded."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        reason = e.strerror or "cannot open"
    else:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is not None:
            if img.dtype != np.uint8:  # 16-bit PNG/PGM
                img = cv2.convertScaleAbs(img, alpha=255.0 / max(int(img.max()), 1))
            if img.ndim == 2:
                return np.repeat(img[..., None], 3, axis=2)
            code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
            return cv2.cvtColor(img, code)
        reason = "empty file" if data.size == 0 else "not a decodable image"
    if skips is not None:
        skips.add(path, reason)
    return None


@dataclass
class ImageList:
    """A labelled list of image files; ``names[label]`` is the class name."""

    paths: list[Path]
    labels: list[int]
    names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, keep_names: Iterable[str]) -> ImageList:
        """The images of the given classes, relabelled 0…k−1 in the order given."""
        order = {n: i for i, n in enumerate(keep_names)}
        pairs = [(p, order[self.names[y]]) for p, y in zip(self.paths, self.labels) if self.names[y] in order]
        return ImageList([p for p, _ in pairs], [y for _, y in pairs], list(order))


def _images_in(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def read_image_folder(root: str | Path, exts: tuple[str, ...] = IMAGE_EXTS) -> ImageList:
    """``root/ID/img.ext`` (LFW's layout too) → one class per sub-folder, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    exts = tuple(e.lower() for e in exts)
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _images_in(d, exts)
        if files:
            paths += files
            labels += [len(names)] * len(files)
            names.append(d.name)
    if not names:
        what = (
            "sub-folders"
            if not any(p.is_dir() for p in root.iterdir())
            else f"images ({', '.join(exts)}) in its sub-folders"
        )
        raise UserError(f"{root}: expected the layout ID/image.jpg, but it has no {what}")
    return ImageList(paths, labels, names)


def read_att(root: str | Path, subjects: Iterable[int] | None = None) -> ImageList:
    """ORL/AT&T ``sK/N.pgm``: subject K → label K−1 (or the rank within ``subjects``), images by N."""
    root = Path(root)
    found = {int(m.group(1)): d for d in root.glob("s*") if d.is_dir() and (m := re.fullmatch(r"s(\d+)", d.name))}
    if not found:
        raise UserError(f"{root}: expected the ORL/AT&T layout sK/N.pgm, but found no sK folders")
    wanted = sorted(found) if subjects is None else list(subjects)
    missing = [k for k in wanted if k not in found]
    if missing:
        raise UserError(f"{root}: missing subject folder(s) {', '.join(f's{k}' for k in missing)}")
    label_of = {k: k - 1 for k in wanted} if subjects is None else {k: i for i, k in enumerate(wanted)}
    paths, labels = [], []
    for k in wanted:
        files = sorted(_images_in(found[k], (".pgm",)), key=lambda p: (len(p.stem), p.stem))  # 2 before 10
        paths += files
        labels += [label_of[k]] * len(files)
    names = [""] * (max(label_of.values()) + 1)
    for k, y in label_of.items():
        names[y] = f"s{k}"
    return ImageList(paths, labels, names)


# ----------------------------------------------------------------- face crops
@dataclass(frozen=True)
class CropBox:
    """A square box ``(x0, y0, side)`` on a reference image of size ``ref`` (w, h).

    Boxes were fitted (least squares, scale + shift) so that the median YuNet
    landmarks of the data set land on the arcface 112×112 template.
    """

    x0: float
    y0: float
    side: float
    ref: tuple[int, int]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        kx, ky = IMAGE_SIZE * self.ref[0] / (self.side * w), IMAGE_SIZE * self.ref[1] / (self.side * h)
        m = np.array(
            [[kx, 0, -IMAGE_SIZE * self.x0 / self.side], [0, ky, -IMAGE_SIZE * self.y0 / self.side]], np.float32
        )
        return cv2.warpAffine(img, m, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


CROPS: Registry = Registry("face crop")
# LFW funneled 250×250: median YuNet landmarks on 300 images (eyes (102.9,114.0),
# (149.1,112.9), nose (126.6,138.0), mouth (108.5,159.2), (146.9,158.1)) map onto
# the template within 2.3 px with the box x 60…194, y 50…184 (134 px → 112).
CROPS.register("lfw")(lambda: CropBox(59.6, 50.2, 134.3, (250, 250)))
# ORL 92×112: median landmarks (26.0,52.6), (61.0,52.3), (43.3,71.3), (30.1,85.4),
# (59.2,84.8) fit the box x −6…94, y 5…105 (100 px → 112); the 6 px missing on
# the left and 2 px on the right are filled by replicating the border column.
CROPS.register("att")(lambda: CropBox(-5.9, 5.3, 99.7, (92, 112)))
CROPS.register("default")(lambda: lambda img: cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA))


def to_face(img: np.ndarray, crop: str = "default") -> np.ndarray:
    """Any RGB uint8 image → the 112×112 face crop named ``crop`` (see :data:`CROPS`)."""
    return CROPS.build(crop)(img)


# --------------------------------------------------------------- LFW protocol
def lfw_vlr_split(root: str | Path) -> tuple[list[str], list[str]]:
    """lfw-vlr (DESIGN.md §4): sorted people with ≥ 5 images, index % 4 == 0 → test; rest → train.

    The folder must be in LFW's layout (``Name/Name_NNNN.jpg``): another data set in an ``ID/image``
    layout (ORL/AT&T's ``sK/N.pgm`` …) would otherwise be split and reported as if it were LFW.
    """
    people = read_image_folder(root)
    for path, y in zip(people.paths, people.labels):
        if not re.fullmatch(re.escape(people.names[y]) + r"_\d{4}", path.stem):
            raise UserError(
                f"{root} is not in LFW's layout Name/Name_NNNN.jpg (it has {path.parent.name}/{path.name}); "
                "lfw-vlr needs LFW (for ORL/AT&T use att-vlr)"
            )
    counts = np.bincount(people.labels, minlength=len(people.names))
    pool = sorted(n for n, c in zip(people.names, counts) if c >= LFW_VLR_MIN_IMAGES)
    test = set(pool[::LFW_VLR_TEST_EVERY])
    return sorted(n for n in people.names if n not in test), sorted(test)
