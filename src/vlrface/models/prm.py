"""Perceptibility regression module (PRM): embedding → predicted RI ``ξ̂``.

At inference ``ξ̂`` is the quality score; it needs no class labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PRM(nn.Module):
    """Dropout → FC → scalar, on the (unnormalised) embedding."""

    def __init__(self, embedding_size: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embedding_size, 1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(embedding.float())).squeeze(-1)

    def index(self, embedding: torch.Tensor) -> torch.Tensor:
        """``ξ̂`` as L_ID reads it (``ri.div_source=predicted``): no dropout (so it is on the scale of the
        eval-mode ξ̂ of the UIs behind μ_UI, σ_UI) and the PRM's parameters detached, so the loss's gradient
        reaches the embedding through the PRM but cannot re-fit the regressor (only L_L1 trains it)."""
        return F.linear(embedding.float(), self.fc.weight.detach(), self.fc.bias.detach()).squeeze(-1)
