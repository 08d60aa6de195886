"""The training objective ``L = L_cls + α·L_L1 + β·L_ID + γ·L_MSE`` (DESIGN.md §1).

It owns the margin head and the UI state, so both are checkpointed with it.
Terms that cannot apply are off, not faked: without a PRM there is no
``L_L1`` and no ``L_ID`` (``μ_UI, σ_UI`` are the PRM's predictions on UI
images, which have no labels to compute a true RI); without PAM no ``L_MSE``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..models.face_model import FaceModel, FaceOutput
from ..models.ri import RI_FORMS, UICentre, index_diversion_loss, pam_loss, prm_loss, ri_distances
from .config import RIConfig

UI_CHUNK = 256


class Objective(nn.Module):
    def __init__(self, head: nn.Module, ri: RIConfig, embedding_size: int) -> None:
        super().__init__()
        self.head = head
        self.cfg = ri
        self.ri_form = RI_FORMS.get(ri.form)
        if ri.ui_update not in ("recompute", "ema"):
            raise UserError(f"unknown ri.ui_update {ri.ui_update!r}; choose recompute or ema")
        self.ui = UICentre(embedding_size)

    def forward(self, out: FaceOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        head_out = self.head(out.embedding, labels)
        loss = head_out.loss
        logs = {"cls": float(head_out.loss.detach())}
        if not self.cfg.enabled:
            return loss, logs
        cfg = self.cfg
        # PartialFC returns a compact cosine (own centre, nearest sampled negative) with its own label columns
        cos_labels = self.head.cosine_labels(labels) if hasattr(self.head, "cosine_labels") else labels
        d_p, d_n, d_ui = ri_distances(out.embedding, head_out.cosine, cos_labels, self.ui.centre)
        ri = self.ri_form(d_p, d_n, d_ui)
        logs["ri"] = float(ri.detach().mean())
        if out.quality is not None:
            if cfg.alpha:
                l1 = prm_loss(out.quality, ri, cfg.smooth_l1_beta)
                loss = loss + cfg.alpha * l1
                logs["l1"] = float(l1.detach())
            if cfg.beta:
                l_id = index_diversion_loss(ri, self.ui.mu, self.ui.sigma, cfg.tau)
                loss = loss + cfg.beta * l_id
                logs["id"] = float(l_id.detach())
                logs["pushed"] = float(((ri.detach() - self.ui.mu) / self.ui.sigma < cfg.tau).float().mean())
        if out.attention is not None and cfg.gamma:
            mse = pam_loss(out.embedding, out.plain, self.ui.centre)
            loss = loss + cfg.gamma * mse
            logs["mse"] = float(mse.detach())
        return loss, logs

    @torch.no_grad()
    def refresh(self, model: FaceModel, ui_inputs: torch.Tensor) -> None:
        """Recompute (or EMA-update) ``ū`` and ``μ_UI, σ_UI`` from the current model on UI images."""
        was_training = model.training
        model.eval()
        embs, preds = [], []
        for chunk in ui_inputs.split(UI_CHUNK):
            out = model(chunk)
            embs.append(out.embedding.float())
            if out.quality is not None:
                preds.append(out.quality.float())
        model.train(was_training)
        self.ui.update(torch.cat(embs), torch.cat(preds) if preds else None, self.cfg.ui_update, self.cfg.ema_momentum)
