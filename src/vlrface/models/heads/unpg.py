"""UNPG (Jung et al., "Unified Negative Pair Generation toward Well-discriminative
Feature Space for Face Recognition", BMVC 2022).

Besides the class prototypes, the batch itself supplies negatives: the
cosines ``s_n`` of all pairs ``i < j`` with different labels. Noisy pairs are
dropped with the box-and-whisker rule — keep ``Q1 − r·IQR ≤ s_n ≤ Q3 + r·IQR``
(quartiles are order statistics ``sorted[⌊0.25 L⌋]`` and ``sorted[⌊0.75 L⌋]``,
as in the authors' code) — and the kept ``s_n`` are appended, scaled and
without margin, as extra negative logits to *every* row of the ArcFace /
CosFace logits, so each sample must also beat the batch's negative pairs.
Gradients flow through the appended pair cosines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registries import HEADS
from .additive import ArcFace, CosFace


def negative_pair_cosines(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fp32 cosines of all pairs ``i < j`` with ``labels[i] != labels[j]``."""
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = F.normalize(embeddings.float(), dim=1)
        sim = x @ x.T
    neg = (labels.unsqueeze(1) != labels.unsqueeze(0)).triu(diagonal=1)
    return sim[neg]


def whisker_filter(values: torch.Tensor, r: float = 1.5) -> torch.Tensor:
    """Values inside ``[Q1 − r·IQR, Q3 + r·IQR]`` (sorted ascending)."""
    if values.numel() == 0:
        return values
    v = values.sort().values
    n = v.numel()
    q1, q3 = v[int(0.25 * n)], v[int(0.75 * n)]
    iqr = q3 - q1
    return v[(v >= q1 - r * iqr) & (v <= q3 + r * iqr)]


class _UNPG:
    """Mixin: appends the filtered negative-pair cosines to a margin head's logits."""

    r: float
    scale: float

    def compute_logits(
        self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor
    ) -> torch.Tensor:
        logits = super().compute_logits(embeddings, cosine, labels, norms)  # type: ignore[misc]
        extra = whisker_filter(negative_pair_cosines(embeddings, labels), self.r)
        return torch.cat([logits, (self.scale * extra).expand(logits.shape[0], -1)], dim=1)


@HEADS.register("unpg-arcface")
class UNPGArcFace(_UNPG, ArcFace):
    def __init__(self, embedding_size: int, num_classes: int, r: float = 1.5, **kwargs) -> None:
        super().__init__(embedding_size, num_classes, **kwargs)
        self.r = r


@HEADS.register("unpg-cosface")
class UNPGCosFace(_UNPG, CosFace):
    def __init__(self, embedding_size: int, num_classes: int, r: float = 1.5, **kwargs) -> None:
        super().__init__(embedding_size, num_classes, **kwargs)
        self.r = r
