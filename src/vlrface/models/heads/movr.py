"""m-OvR: margin one-vs-rest loss (after Jung et al.'s one-vs-rest face losses).

Each class is an independent binary problem instead of one softmax: logit
``z_j = s·ψ_j + b`` with ``ψ_y = cos(θ_y + m)`` for the own class and
``ψ_j = cos θ_j`` otherwise, and loss ``mean_i[softplus(−z_{i,y}) + Σ_{j≠y}
softplus(z_{i,j})]`` (sigmoid cross-entropy, unweighted). The shared bias
``b`` is learnable and starts at ``−log(C)`` so every class begins with
probability ≈ 1/C rather than ½, which keeps the C−1 negative terms from
swamping the first steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import HEADS
from .additive import ArcFace


@HEADS.register("movr")
class MOvR(ArcFace):
    def __init__(self, embedding_size: int, num_classes: int, scale: float = 32.0, margin: float = 0.4) -> None:
        super().__init__(embedding_size, num_classes, scale, margin)
        self.bias = nn.Parameter(torch.tensor(-math.log(num_classes)))

    def margin_logits(self, cosine: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return super().margin_logits(cosine, labels, norms) + self.bias.float()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        valid = labels >= 0
        onehot = F.one_hot(labels.clamp(min=0), logits.shape[1]).to(logits.dtype)
        per_row = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(1)
        return per_row[valid].mean()
