"""Weight imprinting (Qi et al., CVPR 2018): a class prototype = the normalised
mean embedding of that class's images.

Used when a pretrained backbone meets new identities (SFace fine-tuning, a
new training set, few-shot enrolment), so the head starts aligned with the
embedding space instead of at random.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ..models.face_model import FaceOutput
from ..preprocess import Preprocessing


class EmbeddingModel(Protocol):
    """A :class:`~vlrface.models.FaceModel`, or the trunk cache's ``TopModel`` standing in for one.

    What :func:`class_means` and the objective's UI refresh call.
    """

    training: bool
    embedding_size: int

    def __call__(self, x: torch.Tensor) -> FaceOutput: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def class_means(
    model: EmbeddingModel,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    preprocessing: Preprocessing,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised mean embedding per class and a mask of the classes seen."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(num_classes, model.embedding_size, device=device)
    counts = torch.zeros(num_classes, device=device)
    for images, labels in batches:
        labels = labels.to(device)
        emb = model.embed(preprocessing.normalize(images.to(device)))
        sums.index_add_(0, labels, emb)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
    model.train(was_training)
    return F.normalize(sums, dim=1), counts > 0


@torch.no_grad()
def imprint(weight: torch.Tensor, means: torch.Tensor, seen: torch.Tensor) -> int:
    """Overwrite the rows of ``weight`` for seen classes (keeping each row's norm); returns how many."""
    norms = weight[seen].norm(dim=1, keepdim=True).clamp_min(1e-12)
    weight[seen] = means[seen].to(weight.dtype) * norms
    return int(seen.sum())
