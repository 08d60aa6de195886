"""Feature norm ``‖v_a‖₂`` of the unnormalised embedding, for any model.

Margin-softmax training leaves easy, recognisable faces with larger norms
(Ranjan et al. 2017 L2-softmax; AdaFace, Kim et al. CVPR 2022, uses the norm
as its image-quality proxy), although no loss term asks for it. See
:mod:`vlrface.quality.magface` for the model that *is* trained for it.
"""

from __future__ import annotations

import torch

from .base import EmbeddingScorer
from .registry import SCORERS


@SCORERS.register("norm")
class NormScorer(EmbeddingScorer):
    name = "norm"

    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.norm(dim=1)
