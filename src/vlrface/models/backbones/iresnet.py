"""IResNet (Deng et al., ArcFace, CVPR 2019) with insightface ``arcface_torch`` keys.

Module names and shapes match ``arcface_torch/backbones/iresnet.py`` so the
published ``.pth`` files load with ``load_state_dict(strict=True)``. The
``adaface_ir*`` variants match AdaFace's ``net.py`` IR networks instead: the
first stage's shortcut is a parameter-free strided identity (AdaFace's
``MaxPool2d(1, 2)``) and the final BatchNorm1d has no affine parameters;
``vlrface.models.convert`` maps AdaFace's key names onto these modules.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ...preprocess import DEFAULT, Preprocessing
from ..registries import BACKBONES
from .base import Backbone


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN, plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(Backbone):
    """``[B,3,112,112] → fmap [B,512,7,7] → embedding [B,D]`` (unnormalised).

    ``subsample_shortcut``: a stride-2 block whose channels do not change uses
    a parameter-free strided identity (AdaFace) instead of conv1x1+BN
    (insightface). ``affine_features``: the last BatchNorm1d has (frozen-
    weight) affine parameters as in insightface, or none as in AdaFace.
    ``preprocessing`` is the input convention (AdaFace: BGR) the trainer uses.
    """

    feature_channels = 512
    fmap_size = 7

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        subsample_shortcut: bool = False,
        affine_features: bool = True,
        arch: str = "iresnet",
        preprocessing: Preprocessing = DEFAULT,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.preprocessing = preprocessing  # the input convention its published weights expect
        self.embedding_size = embedding_size
        self.subsample_shortcut = subsample_shortcut
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * self.fmap_size**2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5, affine=affine_features)
        for m in self.modules():  # insightface's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if affine_features:  # insightface freezes the scale of the embedding BN
            nn.init.ones_(self.features.weight)
            self.features.weight.requires_grad = False

    def _make_layer(self, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
        if self.subsample_shortcut and self.inplanes == planes:
            downsample: nn.Module = nn.MaxPool2d(1, stride)
        else:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.bn2(fmap), 1)
        return self.features(self.fc(self.dropout(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Blocks per stage; AdaFace's "ir_101" uses the same 100-layer plan as iresnet100.
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
ADAFACE_DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "adaface_ir18": DEPTHS["iresnet18"],
    "adaface_ir34": DEPTHS["iresnet34"],
    "adaface_ir50": DEPTHS["iresnet50"],
    "adaface_ir101": DEPTHS["iresnet100"],
}

for _name, _layers in DEPTHS.items():
    BACKBONES.register(_name)(partial(IResNet, _layers, arch=_name))
for _name, _layers in ADAFACE_DEPTHS.items():
    BACKBONES.register(_name)(
        partial(
            IResNet,
            _layers,
            subsample_shortcut=True,
            affine_features=False,
            arch=_name,
            preprocessing=Preprocessing(color="BGR"),
        )
    )
