"""Plain softmax (linear layer + CE) and NormFace (Wang et al., ACM MM 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import HEADS
from .base import MarginSoftmax


@HEADS.register("softmax")
class Softmax(MarginSoftmax):
    """``W x + b`` on the raw embedding; the cosine is still reported for RI."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__(embedding_size, num_classes, scale=1.0)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def compute_logits(
        self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor
    ) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(embeddings.float(), self.weight.float(), self.bias.float())


@HEADS.register("normface")
class NormFace(MarginSoftmax):
    """``s · cos θ_j`` for every class: the base with no margin."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__(embedding_size, num_classes, scale)
