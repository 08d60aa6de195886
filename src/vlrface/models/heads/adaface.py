"""AdaFace (Kim et al., CVPR 2022): margin adapted to image quality via the norm.

``ẑ = clip(h · (‖z‖ − μ)/(σ + ε), −1, 1)`` with batch-norm statistics ``μ, σ``
kept as EMAs (``t_alpha``); target ``cos(θ_y − m·ẑ) − (m + m·ẑ)``: high-norm
(high-quality) samples get an angular (ArcFace-like) margin, low-norm ones an
additive (CosFace-like) margin that de-emphasises them.
"""

from __future__ import annotations

import math

import torch

from ..registries import HEADS
from .base import MarginSoftmax


@HEADS.register("adaface")
class AdaFace(MarginSoftmax):
    eps = 1e-3
    batch_mean: torch.Tensor  # buffers: EMAs of the batch's norm mean and std
    batch_std: torch.Tensor

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin, self.h, self.t_alpha = margin, h, t_alpha
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def margin_scaler(self, norms: torch.Tensor) -> torch.Tensor:
        safe = norms.detach().clamp(0.001, 100)
        if self.training and safe.numel() > 1:
            with torch.no_grad():
                self.batch_mean.lerp_(safe.mean(), self.t_alpha)
                self.batch_std.lerp_(safe.std(), self.t_alpha)
        z = (safe - self.batch_mean) / (self.batch_std + self.eps)
        return (z * self.h).clamp(-1, 1)

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        ms = self.margin_scaler(norms)
        theta = cos_t.clamp(-1 + self.eps, 1 - self.eps).acos()
        theta_m = (theta - self.margin * ms).clamp(self.eps, math.pi - self.eps)
        return theta_m.cos() - (self.margin + self.margin * ms)
