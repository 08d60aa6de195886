"""MagFace quality: the embedding magnitude ``a = ‖v_a‖₂`` of a MagFace-trained model (Meng et al., CVPR 2021).

The number is the same as :mod:`~vlrface.quality.norm`'s; what differs is the
model. MagFace's loss (:mod:`vlrface.models.heads.magface`) makes the
magnitude a quality on purpose: the margin grows with ``a`` and the
regulariser ``g(a) = a/u_a² + 1/a`` rewards large ``a`` only for faces the
network can place near their class centre, so ``a`` is monotone in
recognisability within ``[l_a, u_a]`` (their Theorem). On other models the
norm is a side effect, so this scorer refuses checkpoints whose head is not
``magface`` and points to ``norm``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserError
from ..models.face_model import FaceModel
from .base import EmbeddingScorer
from .registry import SCORERS


@SCORERS.register("magface")
class MagFaceScorer(EmbeddingScorer):
    name = "magface"

    def __init__(self, model: FaceModel, head: str) -> None:
        if head != "magface":
            raise UserError(
                f"the magface scorer needs a model trained with the magface head, not {head!r}; "
                "use the norm scorer for the plain feature norm"
            )
        super().__init__(model)

    @classmethod
    def from_checkpoint(cls, model: FaceModel, checkpoint: dict[str, Any]) -> MagFaceScorer:
        head = (checkpoint.get("config", {}).get("head") or {}).get("name", "none recorded")
        return cls(model, head)

    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.norm(dim=1)
