"""Backbones: insightface key layout, the backbone contract, output shapes.

The reference layout is written out here from insightface
``arcface_torch/backbones/iresnet.py``: a stem (conv1, bn1, prelu), per block
bn1/conv1/bn2/prelu/conv2/bn3, a conv1x1+BN ``downsample`` on the first block
of every stage, then bn2, fc and the BatchNorm1d ``features``.
"""

from __future__ import annotations

import pytest
import torch

from vlrface.models import BACKBONES

BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def insightface_keys(layers: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Reference state_dict keys → shapes for an insightface IResNet (embedding 512)."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3), "prelu.weight": (64,)}
    bn = lambda name, c: {f"{name}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN}  # noqa: E731
    keys |= bn("bn1", 64)
    cin = 64
    for stage, (n, c) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            keys |= bn(f"{p}.bn1", cin) | bn(f"{p}.bn2", c) | bn(f"{p}.bn3", c)
            keys[f"{p}.conv1.weight"] = (c, cin, 3, 3)
            keys[f"{p}.prelu.weight"] = (c,)
            keys[f"{p}.conv2.weight"] = (c, c, 3, 3)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                keys |= bn(f"{p}.downsample.1", c)
            cin = c
    keys |= bn("bn2", 512) | bn("features", 512)
    keys["fc.weight"] = (512, 512 * 7 * 7)
    keys["fc.bias"] = (512,)
    return keys


DEPTHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}


@pytest.mark.parametrize("name", list(DEPTHS))
def test_iresnet_state_dict_matches_insightface_layout(name):
    with torch.device("meta"):
        model = BACKBONES.build(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == insightface_keys(DEPTHS[name])


def test_iresnet_key_counts_and_named_shapes():
    with torch.device("meta"):
        r18, r50 = BACKBONES.build("iresnet18"), BACKBONES.build("iresnet50")
    assert len(r18.state_dict()) == 187  # 7 stem + 8×18 block + 4×6 downsample + 12 head
    assert len(r50.state_dict()) == 475  # 7 + 24×18 + 24 + 12
    sd = r18.state_dict()
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 3, 3)
    assert sd["layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
    assert sd["features.weight"].shape == (512,)
    assert not r18.features.weight.requires_grad  # insightface freezes it


def test_iresnet_loads_an_insightface_style_state_dict_strictly():
    src = BACKBONES.build("iresnet18")
    raw = {k: v.clone() for k, v in src.state_dict().items()}  # what torch.save(backbone.state_dict()) holds
    dst = BACKBONES.build("iresnet18")
    dst.load_state_dict(raw, strict=True)
    x = torch.randn(2, 3, 112, 112)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x))


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet", "adaface_ir18"])
def test_backbone_contract(name):
    torch.manual_seed(0)
    model = BACKBONES.build(name, embedding_size=128).eval()
    assert model.embedding_size == 128 and model.feature_channels == 512
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        fmap = model.forward_features(x)
        emb = model(x)
        assert fmap.shape == (2, 512, 7, 7)
        assert emb.shape == (2, 128)
        torch.testing.assert_close(emb, model.forward_head(fmap))


def test_mobilefacenet_insightface_keys():
    with torch.device("meta"):
        sd = BACKBONES.build("mobilefacenet").state_dict()
    assert sd["layers.0.layers.0.weight"].shape == (128, 3, 3, 3)
    assert sd["layers.1.layers.0.weight"].shape == (128, 2, 3, 3)  # groups=64 stem conv
    assert sd["layers.2.layers.1.layers.0.weight"].shape == (128, 1, 3, 3)  # depthwise
    assert sd["conv_sep.layers.0.weight"].shape == (512, 256, 1, 1)
    assert sd["features.layers.0.layers.0.weight"].shape == (512, 1, 7, 7)  # GDC
    assert sd["features.layers.2.weight"].shape == (512, 512)
    assert sd["features.layers.3.running_var"].shape == (512,)
    assert "features.layers.2.bias" not in sd


def test_adaface_variant_differs_only_where_adaface_does():
    with torch.device("meta"):
        ours = set(BACKBONES.build("adaface_ir50").state_dict())
    ref = set(insightface_keys(DEPTHS["iresnet50"]))
    assert ref - ours == {f"layer1.0.downsample.{k}" for k in ["0.weight"] + [f"1.{b}" for b in BN]} | {
        "features.weight",
        "features.bias",
    }
    assert ours <= ref


def test_dropout_option_is_used_in_training_only():
    torch.manual_seed(0)
    model = BACKBONES.build("iresnet18", dropout=0.5)
    fmap = torch.randn(4, 512, 7, 7)
    model.train()
    assert not torch.allclose(model.forward_head(fmap), model.forward_head(fmap))
    model.eval()
    torch.testing.assert_close(model.forward_head(fmap), model.forward_head(fmap))


def test_backbones_carry_their_weights_input_convention():
    """insightface weights expect RGB, AdaFace weights BGR; the trainer reads this attribute."""
    assert BACKBONES.build("iresnet18").preprocessing.color == "RGB"
    assert BACKBONES.build("adaface_ir18").preprocessing.color == "BGR"
