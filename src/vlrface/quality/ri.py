"""RI: the Recognizability Index predicted by the PRM, ``ξ̂ = PRM(v_a)`` (Chai et al., the paper this repo implements).

Label-free at inference; needs a model trained with a PRM (``model.prm: true``).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..models.face_model import FaceModel
from .base import EmbeddingScorer
from .registry import SCORERS


@SCORERS.register("ri")
class RIScorer(EmbeddingScorer):
    name = "ri"

    def __init__(self, model: FaceModel) -> None:
        if model.prm is None:
            raise UserError(
                "the ri scorer needs a model with a PRM, and this one was trained without (model.prm: false); "
                "choose another scorer such as norm or serfiq"
            )
        super().__init__(model)
        self.prm = model.prm

    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.prm(embeddings)  # eval mode (the scorer's model.eval()): the PRM's dropout is off
