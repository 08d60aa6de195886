"""The Recognizability Index (Chai et al., CVPR 2023) and its losses.

Pure functions on tensors plus the :class:`UICentre` state. Notation
follows DESIGN.md §1: ``v̂`` normalised embedding, ``W`` normalised class
prototypes (the head's weight), ``ū`` the centre of unrecognisable images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

RI_FORMS: Registry = Registry("RI form")
RATIO_EPS = 1e-3  # keeps the ratio form finite when an embedding sits on its prototype
SIGMA_FLOOR = 1e-2  # σ_UI floor: a collapsed UI cluster must not blow up the diversion


def ri_distances(
    embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor, ui_centre: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine distances ``(d_P, d_N, d_UI)`` of each sample.

    ``cosine [B,C]`` is the plain cosine to every prototype (``HeadOutput.cosine``);
    ``d_P`` is to the own prototype, ``d_N`` to the nearest other one, ``d_UI`` to ``ū``.
    """
    d_p = 1.0 - cosine.gather(1, labels[:, None]).squeeze(1)
    others = cosine.scatter(1, labels[:, None], float("-inf"))
    d_n = 1.0 - others.amax(dim=1)
    d_ui = 1.0 - F.normalize(embeddings.float(), dim=1) @ ui_centre.float()
    return d_p, d_n, d_ui


def nearest_distances(cosine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-free ``(d_P, d_N)`` from a cosine matrix ``[B, K≥2]``: the nearest prototype stands in for the
    own class, the second nearest for the nearest negative — the RI an unlabelled image (a UI) gets when
    it is matched to its best class."""
    top = cosine.float().topk(2, dim=1).values
    return 1.0 - top[:, 0], 1.0 - top[:, 1]


@RI_FORMS.register("additive")
def ri_additive(d_p: torch.Tensor, d_n: torch.Tensor, d_ui: torch.Tensor) -> torch.Tensor:
    """``ξ = d_UI + d_N − d_P``: far from the UI centre and negatives, close to the own class."""
    return d_ui + d_n - d_p


@RI_FORMS.register("ratio")
def ri_ratio(d_p: torch.Tensor, d_n: torch.Tensor, d_ui: torch.Tensor) -> torch.Tensor:
    """``ξ = d_UI · d_N / (d_P + ε)``."""
    return d_ui * d_n / (d_p + RATIO_EPS)


def index_diversion_loss(ri: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, tau: float) -> torch.Tensor:
    """``mean(max(0, τ − (ξ − μ_UI)/σ_UI))``: push samples whose RI is within τ σ of the UI cluster."""
    return F.relu(tau - (ri - mu) / sigma).mean()


def prm_loss(pred: torch.Tensor, ri: torch.Tensor, beta: float = 0.75) -> torch.Tensor:
    """SmoothL1 between the PRM's ``ξ̂`` and the (stop-gradient) RI."""
    return F.smooth_l1_loss(pred.float(), ri.detach().float(), beta=beta)


def pam_target(plain: torch.Tensor, ui_centre: torch.Tensor) -> torch.Tensor:
    """``normalise(v̂ − (v̂·ū) ū)``: the plain embedding with its UI direction removed (no gradient)."""
    v = F.normalize(plain.detach().float(), dim=1)
    u = ui_centre.float()
    return F.normalize(v - (v @ u)[:, None] * u[None, :], dim=1)


def pam_loss(attended: torch.Tensor, plain: torch.Tensor, ui_centre: torch.Tensor) -> torch.Tensor:
    """``mean ‖v̂_a − target‖²`` (sum over dimensions, mean over the batch)."""
    v_a = F.normalize(attended.float(), dim=1)
    return (v_a - pam_target(plain, ui_centre)).pow(2).sum(dim=1).mean()


class UICentre(nn.Module):
    """``ū`` and the UI RI statistics ``μ_UI, σ_UI`` (buffers, so they are checkpointed)."""

    centre: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.register_buffer("centre", torch.zeros(embedding_size))
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("sigma", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @staticmethod
    def centre_of(ui_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.normalize(ui_embeddings.float(), dim=1).mean(dim=0), dim=0)

    def next_centre(self, ui_embeddings: torch.Tensor, mode: str = "recompute", momentum: float = 0.9) -> torch.Tensor:
        """The ``ū`` that :meth:`update` stores: the UIs' own centre, or (EMA) blended into the current one."""
        if mode not in ("ema", "recompute"):
            raise ValueError(f"unknown UI update mode {mode!r}")
        centre = self.centre_of(ui_embeddings)
        if mode == "ema" and bool(self.initialised):
            centre = F.normalize(momentum * self.centre + (1 - momentum) * centre, dim=0)
        return centre

    @torch.no_grad()
    def update(
        self, ui_embeddings: torch.Tensor, ui_ri: torch.Tensor | None, mode: str = "recompute", momentum: float = 0.9
    ) -> None:
        """Recompute ``ū`` (or blend it in, EMA) from UI embeddings; μ/σ from the UIs' RI."""
        centre = self.next_centre(ui_embeddings, mode, momentum)
        stats = None
        if ui_ri is not None:
            stats = (ui_ri.float().mean(), ui_ri.float().std(unbiased=False).clamp_min(SIGMA_FLOOR))
            if mode == "ema" and bool(self.initialised):
                stats = (
                    momentum * self.mu + (1 - momentum) * stats[0],
                    momentum * self.sigma + (1 - momentum) * stats[1],
                )
        self.centre.copy_(centre)
        if stats is not None:
            self.mu.copy_(stats[0])
            self.sigma.copy_(stats[1])
        self.initialised.fill_(True)
