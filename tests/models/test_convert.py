"""Checkpoint import: state dicts written in the published key layouts load and
give identical outputs; AdaFace's layout is also checked against a functional
re-implementation of AdaFace's own IR network."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from vlrface.checkpoint import load_model, save_model
from vlrface.errors import UserError
from vlrface.models import BACKBONES
from vlrface.models.convert import import_adaface, import_insightface

LAYERS18 = (2, 2, 2, 2)


def randomised(name: str) -> torch.nn.Module:
    """A backbone with non-trivial BN statistics and PReLU slopes, in eval mode."""
    torch.manual_seed(0)
    model = BACKBONES.build(name)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_mean") or k.endswith("bias"):
                v.normal_(0, 0.1)
            elif k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif k.endswith("prelu.weight") or (k.endswith(".weight") and v.ndim == 1):
                v.uniform_(0.5, 1.5)
    return model.eval()


def to_adaface_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our adaface_ir18 keys → AdaFace net.py keys (written out by hand)."""
    stem = {"conv1": "input_layer.0", "bn1": "input_layer.1", "prelu": "input_layer.2"}
    head = {"bn2": "output_layer.0", "fc": "output_layer.3", "features": "output_layer.4"}
    res = {"bn1": 0, "conv1": 1, "bn2": 2, "prelu": 3, "conv2": 4, "bn3": 5}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] in stem:
            out[".".join([stem[parts[0]], *parts[1:]])] = v
        elif parts[0] in head:
            out[".".join([head[parts[0]], *parts[1:]])] = v
        else:
            n = sum(LAYERS18[: int(parts[0][-1]) - 1]) + int(parts[1])
            if parts[2] == "downsample":
                out[".".join(["body", str(n), "shortcut_layer", *parts[3:]])] = v
            else:
                out[".".join(["body", str(n), "res_layer", str(res[parts[2]]), *parts[3:]])] = v
    return out


def adaface_reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """AdaFace IR forward (eval mode) computed straight from its own keys."""

    def bn(p, t):
        w, b = sd.get(f"{p}.weight"), sd.get(f"{p}.bias")
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], w, b, False, 0.0, 1e-5)

    x = F.prelu(bn("input_layer.1", F.conv2d(x, sd["input_layer.0.weight"], padding=1)), sd["input_layer.2.weight"])
    n = 0
    for stage, depth in zip(LAYERS18, (64, 128, 256, 512)):
        for b in range(stage):
            stride = 2 if b == 0 else 1
            p = f"body.{n}"
            if x.shape[1] == depth:
                short = F.max_pool2d(x, 1, stride)
            else:
                short = bn(f"{p}.shortcut_layer.1", F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride))
            r = bn(f"{p}.res_layer.0", x)
            r = F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1)
            r = F.prelu(bn(f"{p}.res_layer.2", r), sd[f"{p}.res_layer.3.weight"])
            r = bn(f"{p}.res_layer.5", F.conv2d(r, sd[f"{p}.res_layer.4.weight"], stride=stride, padding=1))
            x = r + short
            n += 1
    x = F.linear(bn("output_layer.0", x).flatten(1), sd["output_layer.3.weight"], sd["output_layer.3.bias"])
    return bn("output_layer.4", x)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 112, 112)


def test_import_insightface_pth_with_module_prefix(tmp_path, image):
    src = randomised("iresnet18")
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    model, prep = import_insightface(path)  # depth read from the keys
    assert prep.color == "RGB"
    assert model.backbone.arch == "iresnet18" and model.pam is None and model.prm is None
    with torch.no_grad():
        torch.testing.assert_close(model(image).embedding, src(image))


def test_import_adaface_ckpt_matches_adaface_network(tmp_path, image):
    src = randomised("adaface_ir18")
    foreign = to_adaface_layout(src.state_dict())
    assert "body.0.shortcut_layer.0.weight" not in foreign  # stage 1: parameter-free shortcut
    assert "output_layer.4.weight" not in foreign  # affine-free BatchNorm1d
    ckpt = {
        "state_dict": {**{f"model.{k}": v for k, v in foreign.items()}, "head.kernel": torch.randn(512, 7)},
        "hyper_parameters": argparse.Namespace(arch="ir_18"),  # refused by weights_only, read as opaque
        "epoch": 3,
    }
    path = tmp_path / "adaface_ir18.ckpt"
    torch.save(ckpt, path)
    model, prep = import_adaface(path)
    assert prep.color == "BGR" and model.backbone.arch == "adaface_ir18"
    with torch.no_grad():
        ours = model(image).embedding
        torch.testing.assert_close(ours, src(image))
        torch.testing.assert_close(ours, adaface_reference(foreign, image), atol=1e-4, rtol=1e-4)


def test_save_model_round_trips_through_load_model(tmp_path, image):
    src = randomised("iresnet18")
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    model, prep = import_insightface(tmp_path / "r18.pth", arch="iresnet18")
    out = save_model(model, prep, tmp_path / "imported.pt")
    loaded, loaded_prep, ckpt = load_model(out)
    assert loaded_prep.color == "RGB"
    assert ckpt["config"]["model"]["backbone"] == "iresnet18" and ckpt["config"]["model"]["pam"] is False
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(image), model.embed(image))


def test_unknown_layout_is_a_user_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not an insightface IResNet"):
        import_insightface(path)
    with pytest.raises(UserError, match="not an AdaFace IR checkpoint"):
        import_adaface(path)
    with pytest.raises(UserError, match="not found"):
        import_insightface(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        import_insightface(tmp_path / "junk.pth")


def test_wrong_arch_names_the_mismatch(tmp_path):
    torch.save(BACKBONES.build("iresnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match="does not fit iresnet34: missing"):
        import_insightface(tmp_path / "r18.pth", arch="iresnet34")
