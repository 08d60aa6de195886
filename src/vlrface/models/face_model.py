"""The recognition model users hold: backbone (+ optional PAM and PRM).

A backbone exposes ``forward_features(x) → fmap [B,C,h,w]`` and
``forward_head(fmap) → embedding [B,D]`` (unnormalised), plus the attributes
``embedding_size`` and ``feature_channels``. With PAM on, the attended
embedding ``v_a`` is ``forward_head(PAM(fmap))`` and the plain embedding ``v``
is ``forward_head(fmap)``. ``pam_mode="residual"`` (default): PAM is gated
residual and ``v_a`` is *the* embedding heads, RI, losses and inference use.
``pam_mode="branch"`` (the paper's wiring): ``v`` is the embedding everything
uses, inference included, and ``v_a`` (``FaceOutput.attended``) is a side
branch that only L_MSE supervises (docs/method.md says why inference keeps ``v``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .backbones.base import Backbone
from .pam import PAM
from .prm import PRM

PAM_MODES = ("residual", "branch")


@dataclass
class FaceOutput:
    embedding: torch.Tensor  # the embedding heads, RI and inference use, unnormalised [B, D]: v_a (residual PAM) or v
    plain: torch.Tensor  # v, unnormalised [B, D] (== embedding without PAM or with a PAM branch)
    quality: torch.Tensor | None  # ξ̂ from the PRM [B], or None
    attention: torch.Tensor | None  # PAM spatial map [B, 1, h, w], or None
    attended: torch.Tensor | None = None  # v_a of a PAM branch [B, D]; None when v_a is the embedding (or no PAM)
    index: torch.Tensor | None = None  # ξ̂ for L_ID [B]: PRM without dropout, parameters detached (PRM.index)


class FaceModel(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        pam: bool = True,
        prm: bool = True,
        prm_dropout: float = 0.5,
        pam_mode: str = "residual",
    ) -> None:
        super().__init__()
        if pam_mode not in PAM_MODES:
            raise UserError(f"unknown model.pam_mode {pam_mode!r}; choose {' or '.join(PAM_MODES)}")
        self.backbone = backbone
        self.embedding_size: int = backbone.embedding_size
        self.pam_mode = pam_mode
        self.pam = PAM(backbone.feature_channels, residual=pam_mode == "residual") if pam else None
        self.prm = PRM(self.embedding_size, prm_dropout) if prm else None

    def forward(self, x: torch.Tensor) -> FaceOutput:
        return self.forward_fmap(self.backbone.forward_features(x))

    def forward_fmap(self, fmap: torch.Tensor) -> FaceOutput:
        """Everything after the backbone's last feature map (PAM, embedding, PRM), so a frozen
        trunk's cached output can be fed in directly (``vlrface.train.trunk_cache``)."""
        plain = self.backbone.forward_head(fmap)
        embedding, attended, attention = plain, None, None
        if self.pam is not None:
            attended_map, attention = self.pam(fmap)
            attended = self.backbone.forward_head(attended_map)
            if self.pam_mode == "residual":  # v_a is the embedding
                embedding, attended = attended, None
        quality = index = None
        if self.prm is not None:
            quality, index = self.prm(embedding), self.prm.index(embedding)
        return FaceOutput(embedding, plain, quality, attention, attended, index)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised final embeddings (inference)."""
        return F.normalize(self(x).embedding.float(), dim=1)

    @torch.no_grad()
    def infer(self, x: torch.Tensor, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What every deployment returns: L2-normalised embeddings ``[B,D]`` and PRM quality ``[B]`` (or None).

        ``flip`` is insightface's test-time augmentation: the raw embeddings of
        the image and its mirror are summed before normalising, the two quality
        scores averaged. One definition shared by evaluation, the service and
        the ONNX graph, so all three give the same numbers.
        """
        out = self(x)
        emb, q = out.embedding.float(), out.quality
        if flip:
            mirrored = self(x.flip(3))
            emb = emb + mirrored.embedding.float()
            q = None if q is None else (q + mirrored.quality) / 2
        return F.normalize(emb, dim=1), None if q is None else q.float().reshape(-1)


def build_model(cfg: dict[str, Any]) -> FaceModel:
    """Build from the ``model:`` section of a config (see ``vlrface.config``)."""
    from .registries import BACKBONES

    kwargs = dict(cfg.get("backbone_kwargs") or {})
    backbone = BACKBONES.build(cfg["backbone"], embedding_size=cfg.get("embedding_size", 512), **kwargs)
    return FaceModel(
        backbone,
        pam=cfg.get("pam", True),
        prm=cfg.get("prm", True),
        prm_dropout=cfg.get("prm_dropout", 0.5),
        pam_mode=cfg.get("pam_mode", "residual"),
    )
