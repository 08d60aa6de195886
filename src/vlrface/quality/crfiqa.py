"""CR-FIQA-style certainty ratio from the trained head (after Boutros et al., "CR-FIQA: Face Image Quality
Assessment by Learning Sample Relative Classifiability", CVPR 2023).

CR-FIQA's certainty ratio is ``CR = CCS / (NNCCS + 1 + ε)``: the cosine to the
sample's own class centre over the cosine to the nearest other centre. It
needs the label, so CR-FIQA trains a regressor to predict CR at inference.
We train no regressor: the label-free stand-in takes the *nearest* class
centre of the trained head as "own" and the second nearest as "nearest
other", ``q = cos₁ / (cos₂ + 1 + ε)``, ε = 1e-9. The centres are the training
identities (``objective.head.weight`` in the checkpoint), so for an unseen
person this measures how decisively the face falls into *some* known class —
a classifiability proxy, not CR-FIQA's trained estimate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models.face_model import FaceModel
from .base import EmbeddingScorer
from .registry import SCORERS

EPS = 1e-9


@SCORERS.register("crfiqa")
class CRFIQAScorer(EmbeddingScorer):
    name = "crfiqa"

    def __init__(self, model: FaceModel, centres: torch.Tensor, eps: float = EPS) -> None:
        if centres.ndim != 2 or len(centres) < 2 or centres.shape[1] != model.embedding_size:
            raise UserError(
                f"crfiqa needs ≥ 2 class centres of size {model.embedding_size}, got {tuple(centres.shape)}"
            )
        super().__init__(model)
        self.centres = F.normalize(centres.float(), dim=1).to(self.device)
        self.eps = eps

    @classmethod
    def from_checkpoint(cls, model: FaceModel, checkpoint: dict[str, Any]) -> CRFIQAScorer:
        weight = (checkpoint.get("objective") or {}).get("head.weight")
        if weight is None:
            raise UserError(
                "the crfiqa scorer needs the trained head's class centres, and this checkpoint has none "
                "(it was not written by 'vlrface train'); choose another scorer"
            )
        return cls(model, weight)

    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(embeddings.float(), dim=1) @ self.centres.T
        top = cos.topk(2, dim=1).values
        return top[:, 0] / (top[:, 1] + 1 + self.eps)
