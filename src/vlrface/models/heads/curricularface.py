"""CurricularFace (Huang et al., CVPR 2020).

Hard negatives (``cos θ_j > cos(θ_y + m)``) get ``cos θ_j · (t + cos θ_j)``;
``t`` is an EMA (momentum 0.99) of the mean own-class cosine, so hard
negatives matter more as training progresses. ``t`` is a buffer (saved in
checkpoints) and only moves in training mode.
"""

from __future__ import annotations

import torch

from ..registries import HEADS
from .base import MarginSoftmax, additive_angular


@HEADS.register("curricularface")
class CurricularFace(MarginSoftmax):
    t: torch.Tensor  # buffer: EMA of the mean own-class cosine

    def __init__(
        self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5, momentum: float = 0.01
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin, self.momentum = margin, momentum
        self.register_buffer("t", torch.zeros(()))

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.t.lerp_(cos_t.detach().mean(), self.momentum)
        return additive_angular(cos_t, self.margin)

    def negative_cosine(self, cosine: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard = cosine > target.unsqueeze(1)
        return torch.where(hard, cosine * (self.t + cosine), cosine)
