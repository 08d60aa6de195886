"""SER-FIQ: agreement of stochastic embeddings (Terhörst et al., "SER-FIQ: Unsupervised Estimation of
Face Image Quality Based on Stochastic Embedding Robustness", CVPR 2020).

``m`` forward passes of the embedding layer with dropout on its input give
embeddings ``x_1 … x_m`` (L2-normalised); the quality is eq. 2 of the paper,
``q = 2σ(−(2/m²) Σ_{i<j} ‖x_i − x_j‖₂)``: 1 when dropout does not move the
embedding, lower the more it does. (The authors' code averages over the
``m(m−1)/2`` pairs instead, which differs by the factor ``(m−1)/m``.)

Our choices: dropout with rate ``p`` (0.5 as in the paper) on the input of
the backbone's last ``Linear`` — the embedding layer; the rest of the network
runs once, in eval mode, so the ``m`` passes cost only the head. The ``m``
masks come from a generator seeded with ``seed`` and are the same for every
image, so a face's score does not depend on its batch or on the global RNG.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..models.face_model import FaceModel
from .base import QualityScorer, head_input
from .registry import SCORERS


def stochastic_agreement(embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, m, D]`` stochastic embeddings → ``2σ(−(2/m²) Σ_{i<j} ‖x̂_i − x̂_j‖)`` per row, ``x̂`` L2-normalised."""
    x = nn.functional.normalize(embeddings.double(), dim=2)
    m = x.shape[1]
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # [B, m, m], exact zeros on the diagonal
    pair_sum = dist.sum((1, 2)) / 2  # each unordered pair once
    return (2 * torch.sigmoid(-2.0 * pair_sum / m**2)).float()


def embedding_layer(backbone: nn.Module, embedding_size: int) -> nn.Linear:
    """The backbone's last ``Linear`` with ``embedding_size`` outputs (IResNet ``fc``, MobileFaceNet GDC's linear …)."""
    layers = [m for m in backbone.modules() if isinstance(m, nn.Linear) and m.out_features == embedding_size]
    if not layers:
        raise UserError(f"{type(backbone).__name__} has no Linear embedding layer for SER-FIQ's dropout")
    return layers[-1]


@SCORERS.register("serfiq")
class SERFIQScorer(QualityScorer):
    name = "serfiq"

    def __init__(self, model: FaceModel, passes: int = 100, dropout: float = 0.5, seed: int = 0) -> None:
        if passes < 2 or not 0 <= dropout < 1:
            raise UserError(f"SER-FIQ needs passes ≥ 2 and 0 ≤ dropout < 1, got {passes} and {dropout}")
        super().__init__(model)
        self.passes, self.dropout, self.seed = passes, dropout, seed
        self.layer = embedding_layer(model.backbone, model.embedding_size)

    def masks(self, features: int) -> torch.Tensor:
        """The ``[m, features]`` inverted-dropout masks: keep with probability ``1 − p``, scale by ``1/(1 − p)``."""
        g = torch.Generator().manual_seed(self.seed)
        return (torch.rand(self.passes, features, generator=g) >= self.dropout).float() / (1 - self.dropout)

    def score_images(self, x: torch.Tensor) -> torch.Tensor:
        fmap = head_input(self.model, x)
        embs = []
        for mask in self.masks(self.layer.in_features).to(x.device):
            handle = self.layer.register_forward_pre_hook(lambda _, args, mask=mask: (args[0] * mask, *args[1:]))
            try:
                embs.append(self.model.backbone.forward_head(fmap).float())
            finally:
                handle.remove()
        return stochastic_agreement(torch.stack(embs, 1))
