"""The training objective ``L = L_cls + α·L_L1 + β·L_ID + γ·L_MSE`` (DESIGN.md §1).

It owns the margin head and the UI state, so both are checkpointed with it.
Terms that cannot apply are off, not faked: without a PRM there is no
``L_L1`` (and no ``L_ID`` when ``ri.ui_stats=prm``); without PAM no ``L_MSE``.

``μ_UI, σ_UI`` need the RI of UI images, which have no labels. The default
(``ri.ui_stats=nearest``) takes the label-free RI: the nearest prototype as the
own class, the second nearest as the negative. DESIGN.md's first choice, the
PRM's prediction on the UIs (``prm``), collapses in practice: the PRM is fitted
on labelled faces only, predicts a near-constant for the out-of-distribution
UIs (σ_UI ≈ 0.01–0.02 on SFace), and then well-recognised HR faces count as
"inside the UI cluster" and are pushed (docs/method.md has the figures).

``ri.div_source`` says which index L_ID compares with ``μ_UI, σ_UI``:
``labelled`` (default) the faces' labelled ξ, with μ/σ as ``ui_stats`` says;
``predicted`` (the paper's reading) the PRM's ξ̂ of the faces against the mean
and std of its ξ̂ over the UIs — one scale on both sides, ``ui_stats`` unused —
with L_ID's gradient reaching the embedding through the (frozen-for-L_ID) PRM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RIConfig
from ..errors import UserError
from ..models.face_model import FaceOutput
from ..models.heads.base import MarginSoftmax
from ..models.ri import RI_FORMS, UICentre, index_diversion_loss, nearest_distances, pam_loss, prm_loss, ri_distances
from . import distributed as D
from .imprint import EmbeddingModel
from .partial_fc import PartialFC

UI_CHUNK = 256
UI_STATS = ("nearest", "prm")
DIV_SOURCES = ("labelled", "predicted")


class Objective(nn.Module):
    def __init__(self, head: MarginSoftmax | PartialFC, ri: RIConfig, embedding_size: int, *, prm: bool = True) -> None:
        """``prm``: whether the model has a PRM (``ri.div_source=predicted`` needs one)."""
        super().__init__()
        self.head = head
        self.cfg = ri
        self.ri_form = RI_FORMS.get(ri.form)
        if ri.ui_update not in ("recompute", "ema"):
            raise UserError(f"unknown ri.ui_update {ri.ui_update!r}; choose recompute or ema")
        if ri.ui_stats not in UI_STATS:
            raise UserError(f"unknown ri.ui_stats {ri.ui_stats!r}; choose {' or '.join(UI_STATS)}")
        if ri.div_source not in DIV_SOURCES:
            raise UserError(f"unknown ri.div_source {ri.div_source!r}; choose {' or '.join(DIV_SOURCES)}")
        self.predicted = ri.div_source == "predicted"
        if ri.enabled and self.predicted and ri.beta and not prm:
            raise UserError("ri.div_source=predicted compares the PRM's ξ̂: it needs model.prm=true")
        if ri.enabled and self.predicted and ri.beta and not ri.alpha:
            raise UserError("ri.div_source=predicted needs a trained PRM: ri.alpha > 0 (L_L1 is what fits ξ̂ to ξ)")
        if ri.enabled and not self.predicted and ri.ui_stats == "nearest" and head.num_classes < 2:
            raise UserError("ri.ui_stats=nearest needs ≥ 2 classes (a nearest and a second-nearest prototype)")
        self.ui = UICentre(embedding_size)

    def forward(
        self, out: FaceOutput, labels: torch.Tensor, vlr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss and its logs; ``vlr`` (bool ``[B]``, optional) marks the degraded samples, so the logs
        split the share L_ID pushes into HR (``pushed_hr``) and VLR (``pushed_vlr``) faces."""
        head_out = self.head(out.embedding, labels)
        loss = head_out.loss
        logs = {"cls": float(head_out.loss.detach())}
        if not self.cfg.enabled:
            return loss, logs
        cfg = self.cfg
        # PartialFC returns a compact cosine (own centre, nearest sampled negative) with its own label columns
        cos_labels = self.head.cosine_labels(labels) if isinstance(self.head, PartialFC) else labels
        d_p, d_n, d_ui = ri_distances(out.embedding, head_out.cosine, cos_labels, self.ui.centre)
        ri = self.ri_form(d_p, d_n, d_ui)
        logs["ri"] = float(ri.detach().mean())
        if out.quality is not None and cfg.alpha:
            l1 = prm_loss(out.quality, ri, cfg.smooth_l1_beta)
            loss = loss + cfg.alpha * l1
            logs["l1"] = float(l1.detach())
        if self.predicted and cfg.beta:
            if out.index is None:
                raise ValueError("ri.div_source=predicted needs FaceOutput.index (the PRM's ξ̂ for L_ID)")
            logs["xi_hat"] = float(out.index.detach().float().mean())
            l_id, id_logs = self.diversion(out.index.float(), vlr)
            loss, logs = loss + cfg.beta * l_id, logs | id_logs
        elif cfg.beta and (out.quality is not None or cfg.ui_stats == "nearest"):
            l_id, id_logs = self.diversion(ri, vlr)
            loss, logs = loss + cfg.beta * l_id, logs | id_logs
        if out.attention is not None and cfg.gamma:
            attended = out.attended if out.attended is not None else out.embedding  # a PAM branch, or v_a itself
            mse = pam_loss(attended, out.plain, self.ui.centre)
            loss = loss + cfg.gamma * mse
            logs["mse"] = float(mse.detach())
        return loss, logs

    def diversion(self, xi: torch.Tensor, vlr: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """``L_ID`` on the index ``xi`` and its logs: ``id``, the share pushed (``div < τ``) of all samples
        and, given the ``vlr`` mask, of the HR (``pushed_hr``) and the VLR (``pushed_vlr``) ones; μ_UI, σ_UI."""
        mu, sigma, tau = self.ui.mu, self.ui.sigma, self.cfg.tau
        l_id = index_diversion_loss(xi, mu, sigma, tau)
        pushed = ((xi.detach() - mu) / sigma < tau).float()
        logs = {"id": float(l_id.detach()), "pushed": float(pushed.mean())}
        if vlr is not None:
            vlr = vlr.to(pushed.device, torch.bool)
            for name, rows in (("pushed_hr", ~vlr), ("pushed_vlr", vlr)):
                if bool(rows.any()):  # a batch with no HR (or no VLR) sample has no share to log
                    logs[name] = float(pushed[rows].mean())
        logs |= {"mu_ui": float(mu), "sigma_ui": float(sigma)}
        return l_id, logs

    @torch.no_grad()
    def refresh(self, model: EmbeddingModel, ui_inputs: torch.Tensor) -> None:
        """Recompute (or EMA-update) ``ū`` and ``μ_UI, σ_UI`` from the current model on UI images."""
        was_training = model.training
        model.eval()
        chunks: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        for chunk in ui_inputs.split(UI_CHUNK):
            out = model(chunk)
            chunks.append(out.embedding.float())
            if out.quality is not None:
                preds.append(out.quality.float())
        model.train(was_training)
        embs = torch.cat(chunks)
        centre = self.ui.next_centre(embs, self.cfg.ui_update, self.cfg.ema_momentum)  # what training will use
        self.ui.update(embs, self.ui_ri(embs, preds, centre), self.cfg.ui_update, self.cfg.ema_momentum)

    def ui_ri(self, embs: torch.Tensor, preds: list[torch.Tensor], centre: torch.Tensor) -> torch.Tensor | None:
        """The UIs' RI for ``μ_UI, σ_UI``: label-free (``nearest``) or the PRM's prediction (``prm``, and always
        with ``div_source=predicted``: the faces' ξ̂ is then compared with the UIs' ξ̂)."""
        if self.cfg.ui_stats == "prm" or self.predicted:
            return torch.cat(preds) if preds else None
        return self.label_free_ri(embs, centre)

    def label_free_ri(self, embs: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """ξ with the nearest prototype as the own class and the second nearest as the negative.

        Under PartialFC with ``partial_fc_rate < 1`` a training sample's ``d_N`` is to the nearest *sampled*
        negative, so its ξ reads a little higher than this all-class one: slightly fewer samples are pushed.
        """
        cosine = F.normalize(embs, dim=1) @ F.normalize(self.head.weight.detach().float(), dim=1).T
        world = D.current().world_size
        if isinstance(self.head, PartialFC) and world > 1:  # PartialFC shard: gather
            padded = F.pad(cosine, (0, max(0, 2 - cosine.shape[1])), value=-2.0)  # a one-class shard
            local = padded.topk(2, dim=1).values
            cosine = torch.cat(D.all_gather_nograd(local.contiguous()).chunk(world), dim=1)
        d_p, d_n = nearest_distances(cosine)
        d_ui = 1.0 - F.normalize(embs, dim=1) @ centre
        return self.ri_form(d_p, d_n, d_ui)
