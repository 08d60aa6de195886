"""The margin-softmax base every head shares.

The base owns the class prototypes ``weight [C, D]``, the fp32 cosine, the
scale and the cross-entropy. A head changes only what its paper changes,
through three hooks:

* ``target_cosine(cos_t, norms)`` — the margin on the own-class cosine;
* ``negative_cosine(cosine, target)`` — re-weighting of hard negatives;
* ``extra_loss(norms)`` — a regulariser (MagFace's ``g(a)``).

``margin_logits(cosine, labels, norms)`` is the pure piece built from the
hooks: PartialFC calls it with the cosine to a sampled subset of prototypes
and labels remapped into that subset (``-1`` = the row's class is not in the
subset, so the row gets no margin and is ignored by the loss).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Keeps acos/sqrt gradients finite when a cosine reaches ±1 exactly (fp32).
COS_EPS = 1e-7


class HeadOutput(NamedTuple):
    loss: torch.Tensor  # scalar
    logits: torch.Tensor  # [B, C'] scaled logits the loss saw (C' ≥ C for UNPG)
    cosine: torch.Tensor  # [B, C] plain fp32 cosine to every prototype, no margin


def additive_angular(cos_t: torch.Tensor, margin: torch.Tensor | float, easy_margin: bool = False) -> torch.Tensor:
    """``cos(θ + m)`` in fp32, with ArcFace's fallback where ``θ + m > π``.

    ``easy_margin`` applies the margin only where ``cos θ > 0``; otherwise the
    target is ``cos θ − m·sin m`` beyond ``θ = π − m`` so it stays monotonic.
    ``margin`` may be a per-sample tensor (MagFace).
    """
    m = torch.as_tensor(margin, dtype=torch.float32, device=cos_t.device)
    c = cos_t.float().clamp(-1 + COS_EPS, 1 - COS_EPS)
    sin = (1.0 - c * c).sqrt()
    phi = c * torch.cos(m) - sin * torch.sin(m)
    if easy_margin:
        return torch.where(c > 0, phi, c)
    return torch.where(c > torch.cos(math.pi - m), phi, c - torch.sin(math.pi - m) * m)


class MarginSoftmax(nn.Module):
    """NormFace-style base: ``s · cos θ`` with hooks for margins.

    ``forward`` takes *unnormalised* embeddings (their norm feeds MagFace and
    AdaFace) and returns :class:`HeadOutput`; all arithmetic after the matmul
    is fp32 even under autocast.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    # --- hooks -----------------------------------------------------------------
    def target_cosine(self, cos_t: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """Own-class cosine ``[B]`` → its margin-modified value ``[B]``."""
        return cos_t

    def negative_cosine(self, cosine: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cosine matrix ``[B,C]`` → its non-target entries' values (target column is overwritten)."""
        return cosine

    def extra_loss(self, norms: torch.Tensor) -> torch.Tensor | float:
        return 0.0

    # --- shared mechanism --------------------------------------------------------
    def cosine(self, embeddings: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 ``[B, C]`` cosine between embeddings and (a subset of) prototypes."""
        w = self.weight if weight is None else weight
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(w.float(), dim=1))

    def margin_logits(self, cosine: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """Scaled logits: margin on each row's target column, hooks on the rest."""
        has_target = labels >= 0
        idx = labels.clamp(min=0).unsqueeze(1)
        cos_t = cosine.gather(1, idx).squeeze(1)
        target = torch.where(has_target, self.target_cosine(cos_t, norms), cos_t)
        others = torch.where(has_target.unsqueeze(1), self.negative_cosine(cosine, target), cosine)
        return others.scatter(1, idx, target.unsqueeze(1)) * self.scale

    def compute_logits(
        self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor
    ) -> torch.Tensor:
        return self.margin_logits(cosine, labels, norms)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, ignore_index=-1) + self.extra_loss(norms)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        norms = embeddings.float().norm(dim=1)
        cosine = self.cosine(embeddings)
        logits = self.compute_logits(embeddings, cosine, labels, norms)
        return HeadOutput(self.loss(logits, labels, norms), logits, cosine)

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, scale={self.scale}"
