"""IResNet-nano: the IResNet block plan shrunk for CPU demos and tests.

Same residual block and embedding head as IResNet, but a stride-2 stem, one
block per stage and narrow stages, so a laptop CPU trains it at hundreds of
images per second. Not meant to compete with IResNet-50 on real data.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registries import BACKBONES
from .base import Backbone
from .iresnet import IBasicBlock


class IResNetNano(Backbone):
    """``[B,3,112,112] → fmap [B,C,7,7] → embedding [B,D]``."""

    def __init__(
        self, embedding_size: int = 512, widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.feature_channels = widths[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):  # 56 → 28 → 14 → 7, last stage keeps 7×7
            stride = 2 if i < len(widths) - 1 else 1
            down = (
                None
                if stride == 1 and cin == w
                else nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            )
            stages.append(IBasicBlock(cin, w, stride, down))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.bn2 = nn.BatchNorm2d(cin)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(fmap), 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@BACKBONES.register("iresnet_nano")
def iresnet_nano(embedding_size: int = 512, **kwargs) -> IResNetNano:
    return IResNetNano(embedding_size, **kwargs)
