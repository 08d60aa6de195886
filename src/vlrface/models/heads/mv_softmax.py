"""MV-Softmax (Wang et al., "Mis-classified Vector Guided Softmax Loss", AAAI 2020).

A negative whose cosine exceeds the margin target is mis-classified; its
cosine becomes ``t·cos θ_j + t − 1`` (t > 1), which raises its logit.
"""

from __future__ import annotations

import torch

from ..registries import HEADS
from .base import MarginSoftmax, additive_angular


@HEADS.register("mv-softmax")
class MVSoftmax(MarginSoftmax):
    """``variant="am"`` (MV-AM, target ``cos θ − m``) or ``"arc"`` (MV-Arc, ``cos(θ + m)``)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 32.0,
        margin: float = 0.35,
        t: float = 1.2,
        variant: str = "am",
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if variant not in ("am", "arc"):
            raise ValueError(f"mv-softmax variant must be 'am' or 'arc', got {variant!r}")
        self.margin, self.t, self.variant = margin, t, variant

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        if self.variant == "am":
            return cos_t - self.margin
        return additive_angular(cos_t, self.margin)

    def negative_cosine(self, cosine: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard = cosine > target.unsqueeze(1)
        return torch.where(hard, self.t * cosine + self.t - 1.0, cosine)
