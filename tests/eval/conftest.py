"""Tiny synthetic 'faces' written in each protocol's real layout."""

from pathlib import Path

import cv2
import numpy as np
import pytest


def face(identity: int, k: int, shape=(40, 32)) -> np.ndarray:
    """Grey image: a smooth pattern fixed by ``identity`` plus small noise fixed by ``k``."""
    coarse = np.random.default_rng(identity).integers(0, 255, (4, 4)).astype(np.float32)
    img = cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)
    img += np.random.default_rng(1000 + 31 * identity + k).normal(0, 4, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write(path: Path, identity: int, k: int, shape=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), face(identity, k, shape))
    return path


@pytest.fixture
def att_root(tmp_path: Path) -> Path:
    """ORL layout ``sK/N.pgm`` for subjects 1–40 with 3 images each (1 gallery, 2 probes)."""
    for s in range(1, 41):
        for n in range(1, 4):
            write(tmp_path / "att" / f"s{s}" / f"{n}.pgm", s, n, (112, 92))
    return tmp_path / "att"


@pytest.fixture
def write_face():
    """``write_face(path, identity, k, shape)`` → the written path."""
    return write
