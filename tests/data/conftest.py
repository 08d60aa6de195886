"""Shared fixtures for data tests: a tiny image folder with bad files, the shared data root."""

from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """alice: 2 colour PNGs + a corrupt JPG; bob: 2 grey PGMs + an empty PNG; junk.txt ignored."""
    rng = np.random.default_rng(0)
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "alice" / f"{i}.png"), rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "bob" / f"{i}.pgm"), rng.integers(0, 255, (50, 50), dtype=np.uint8))
    (tmp_path / "alice" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "bob" / "empty.png").write_bytes(b"")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    return tmp_path
