"""CosFace (Wang et al., CVPR 2018) and ArcFace (Deng et al., CVPR 2019)."""

from __future__ import annotations

import torch

from ..registries import HEADS
from .base import MarginSoftmax, additive_angular


@HEADS.register("cosface")
class CosFace(MarginSoftmax):
    """Target ``cos θ_y − m``."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin = margin

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return cos_t - self.margin


@HEADS.register("arcface")
class ArcFace(MarginSoftmax):
    """Target ``cos(θ_y + m)`` (fp32, clamped; ``easy_margin`` or the th/mm fallback)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin = margin
        self.easy_margin = easy_margin

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return additive_angular(cos_t, self.margin, self.easy_margin)
