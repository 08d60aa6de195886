"""NAN, the negative-aware norm ``‖a‖₁ / ‖a‖₀`` (Park, Chai, Yoon, Teoh, "Understanding the Feature Norm
for Out-of-Distribution Detection", ICCV 2023).

``a`` is the rectified last hidden layer: ``max(0, ·)`` of the feature map the
embedding head consumes (the backbone's last stage, through PAM when the
model has one; :func:`~vlrface.quality.base.head_input`), all ``C×h×w``
entries. ``‖a‖₁/‖a‖₀`` is the mean of the *active* units: a large plain norm
can come from many weakly active units, whereas NAN also rewards the
deactivation (more zeros) that in-distribution inputs show. That layer is
the last one every backbone here shares (IResNet, nano, MobileFaceNet, SFace);
deeper layers are linear maps of it (BN, FC), with nothing left to rectify.
An all-zero ``a`` scores 0.
"""

from __future__ import annotations

import torch

from .base import QualityScorer, head_input
from .registry import SCORERS


def negative_aware_norm(hidden: torch.Tensor) -> torch.Tensor:
    """``[B, …]`` activations → ``‖relu(a)‖₁ / ‖relu(a)‖₀`` per row (0 where nothing is active)."""
    a = hidden.flatten(1).clamp(min=0)
    active = (a > 0).sum(1)
    return torch.where(active > 0, a.sum(1) / active.clamp(min=1), torch.zeros_like(a[:, 0]))


@SCORERS.register("nan")
class NANScorer(QualityScorer):
    name = "nan"

    def score_images(self, x: torch.Tensor) -> torch.Tensor:
        return negative_aware_norm(head_input(self.model, x))
