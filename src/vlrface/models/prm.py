"""Perceptibility regression module (PRM): embedding → predicted RI ``ξ̂``.

At inference ``ξ̂`` is the quality score; it needs no class labels.
"""

from __future__ import annotations

import torch
from torch import nn


class PRM(nn.Module):
    """Dropout → FC → scalar, on the (unnormalised) embedding."""

    def __init__(self, embedding_size: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embedding_size, 1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(embedding.float())).squeeze(-1)
