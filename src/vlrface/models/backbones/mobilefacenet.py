"""MobileFaceNet (Chen et al., CCBR 2018) in insightface ``arcface_torch``'s layout.

Module names follow ``arcface_torch/backbones/mobilefacenet.py`` (itself from
cavaface), so its ``mbf`` weights load unchanged. The head is the GDC: a 7×7
depthwise conv, a linear layer and a BatchNorm1d.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..registries import BACKBONES
from .base import Backbone


class ConvBlock(nn.Module):
    """conv → BN → PReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """conv → BN (no activation: the bottleneck's linear projection)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1×1 expand to ``groups`` → 3×3 depthwise → 1×1 project."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int = 2, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            LinearBlock(groups, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    def __init__(self, channels: int, num_block: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, groups, stride=1, residual=True) for _ in range(num_block)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv head: ``[B,512,7,7] → [B,D]``."""

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(512, 512, kernel=7, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(Backbone):
    feature_channels = 512

    def __init__(
        self, embedding_size: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 2
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        c1, c2 = 64 * scale, 128 * scale
        stem2 = ConvBlock(c1, c1, 3, 1, 1, groups=64) if blocks[0] == 1 else Residual(c1, blocks[0], groups=128)
        self.layers = nn.ModuleList(
            [
                ConvBlock(3, c1, 3, 2, 1),
                stem2,
                DepthWise(c1, c1, groups=128),
                Residual(c1, blocks[1], groups=128),
                DepthWise(c1, c2, groups=256),
                Residual(c2, blocks[2], groups=256),
                DepthWise(c2, c2, groups=512),
                Residual(c2, blocks[3], groups=256),
            ]
        )
        self.conv_sep = ConvBlock(c2, 512)
        self.features = GDC(embedding_size)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.conv_sep(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.features(fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


BACKBONES.register("mobilefacenet")(MobileFaceNet)
BACKBONES.register("mobilefacenet_large")(partial(MobileFaceNet, blocks=(2, 8, 12, 4), scale=4))
