"""Pixel conventions shared by data, models, checkpoints and serving.

Images are RGB ``uint8`` HxWx3 arrays in memory. A network sees float tensors
``[B, 3, 112, 112]`` scaled as ``(x / 255 - mean) / std`` with mean = std = 0.5
(insightface's convention). The convention travels inside every checkpoint so
a model trained on BGR input (insightface ``arcface_torch``, AdaFace) is fed
BGR at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

IMAGE_SIZE = 112


@dataclass(frozen=True)
class Preprocessing:
    """How a model expects its input; stored in checkpoints as a dict."""

    color: str = "RGB"  # channel order the network was trained on: "RGB" or "BGR"
    mean: float = 0.5
    std: float = 0.5
    size: int = IMAGE_SIZE

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Preprocessing:
        return cls(**(d or {}))

    def to_tensor(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 ``[B,H,W,3]`` (or a list of HxWx3) → normalised float ``[B,3,H,W]``."""
        arr = np.stack(images) if isinstance(images, list) else np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
        return self.normalize(t / 255.0)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (RGB, ``[B,3,H,W]``) → network input."""
        if self.color == "BGR":
            x01 = x01.flip(1)
        return (x01 - self.mean) / self.std


DEFAULT = Preprocessing()
