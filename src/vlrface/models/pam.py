"""Perceptibility attention module (PAM): channel + spatial attention on the
backbone's last feature map (CBAM-style, Woo et al. 2018).

The paper sells PAM as explanatory, so the spatial map is returned for
heat-map export. Two forms (``model.pam_mode``, docs/method.md): ``residual``
returns ``fmap + g·x·attn`` with the gate ``g`` at 0 (identity at init), for a
PAM whose output *is* the embedding; ``branch`` returns the attended map
``x·attn`` itself, for a side branch that only L_MSE supervises.
"""

from __future__ import annotations

import torch
from torch import nn


class PAM(nn.Module):
    """``fmap [B,C,h,w] → (attended fmap [B,C,h,w], spatial map [B,1,h,w])``."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        hidden = max(channels // reduction, 8)
        self.channel_mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # Residual gate, zero at init (as SAGAN's γ): PAM starts as the identity, so a
        # pretrained backbone's embedding is unchanged until training opens the gate.
        # A branch has no gate: its output feeds only L_MSE (an unused gate would also upset DDP).
        self.gate = nn.Parameter(torch.zeros(1)) if residual else None

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        avg = self.channel_mlp(fmap.mean(dim=(2, 3), keepdim=True))
        mx = self.channel_mlp(fmap.amax(dim=(2, 3), keepdim=True))
        x = fmap * torch.sigmoid(avg + mx)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        attn = torch.sigmoid(self.spatial(pooled))
        if self.gate is None:
            return x * attn, attn
        return fmap + self.gate * x * attn, attn
