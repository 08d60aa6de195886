"""The interface every quality scorer shares.

A scorer wraps a :class:`~vlrface.models.FaceModel` (in eval mode) and maps a
batch to one number per face, higher = better. ``score`` takes either
network input ``[B,3,H,W]`` (preprocessed, see :mod:`vlrface.preprocess`) or
unnormalised embeddings ``[B,D]``; scorers that read a hidden layer (NAN,
SER-FIQ) accept images only. Subclasses implement one hook:
``score_images`` (hidden-layer scorers) or ``score_embeddings``
(:class:`EmbeddingScorer`: RI, norm, MagFace, CR-FIQA), which also serves
images through the model's embedding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import UserError
from ..models.face_model import FaceModel


def head_input(model: FaceModel, x: torch.Tensor) -> torch.Tensor:
    """The feature map the embedding head consumes: ``PAM(fmap)`` with PAM on, else the backbone's ``fmap``."""
    fmap = model.backbone.forward_features(x)
    return model.pam(fmap)[0] if model.pam is not None else fmap


class QualityScorer(ABC):
    """``score(batch) → np.ndarray [B]`` (float32, higher = better)."""

    name: ClassVar[str]

    def __init__(self, model: FaceModel) -> None:
        self.model = model.eval()

    @classmethod
    def from_checkpoint(cls, model: FaceModel, checkpoint: dict[str, Any]) -> QualityScorer:
        """Build for a loaded model; scorers that need the head or its config read them here."""
        return cls(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abstractmethod
    def score_images(self, x: torch.Tensor) -> torch.Tensor:
        """Network input ``[B,3,H,W]`` → quality ``[B]``."""

    def _hook(self, ndim: int):
        if ndim == 4:
            return self.score_images
        if ndim == 2:
            raise UserError(f"the {self.name} scorer reads a hidden layer: give it images [B,3,H,W], not embeddings")
        raise ValueError(f"expected images [B,3,H,W] or embeddings [B,D], got {ndim} dimensions")

    @torch.inference_mode()
    def score(self, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Quality of each row of ``x`` (images or embeddings), ``batch_size`` rows per forward pass."""
        t = torch.as_tensor(x)
        fn = self._hook(t.ndim)
        parts = [fn(c.to(self.device, torch.float32)).float().reshape(-1).cpu() for c in t.split(batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)


class EmbeddingScorer(QualityScorer):
    """A scorer that needs only the final (unnormalised) embedding ``v_a``."""

    @abstractmethod
    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings ``[B,D]`` → quality ``[B]``."""

    def score_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_embeddings(self.model(x).embedding.float())

    def _hook(self, ndim: int):
        return self.score_embeddings if ndim == 2 else super()._hook(ndim)
