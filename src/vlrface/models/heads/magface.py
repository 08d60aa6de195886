"""MagFace (Meng et al., CVPR 2021): the feature norm ``a`` sets the margin.

``m(a) = l_m + (u_m − l_m)(a − l_a)/(u_a − l_a)`` on ``a`` clamped to
``[l_a, u_a]``; target ``cos(θ_y + m(a))``; loss ``CE + λ_g · mean(g(a))`` with
``g(a) = a/u_a² + 1/a``, which pushes easy (recognisable) faces to larger norms.
"""

from __future__ import annotations

import torch

from ..registries import HEADS
from .base import MarginSoftmax, additive_angular


@HEADS.register("magface")
class MagFace(MarginSoftmax):
    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.l_a, self.u_a, self.l_m, self.u_m = l_a, u_a, l_m, u_m
        self.lambda_g, self.easy_margin = lambda_g, easy_margin

    def margin(self, norms: torch.Tensor) -> torch.Tensor:
        a = norms.clamp(self.l_a, self.u_a)
        return self.l_m + (self.u_m - self.l_m) * (a - self.l_a) / (self.u_a - self.l_a)

    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return additive_angular(cos_t, self.margin(norms), self.easy_margin)

    def extra_loss(self, norms: torch.Tensor) -> torch.Tensor:
        a = norms.clamp(self.l_a, self.u_a)
        return self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()
