"""Import published insightface ``arcface_torch`` and AdaFace weights.

* insightface ``arcface_torch`` IResNet ``.pth``: a raw backbone state dict
  (``module.`` prefixes from DataParallel/DDP are stripped). Our ``iresnet*``
  backbones use the same module names, so it loads strictly as is. These
  models were trained on **RGB** input (``mx.image.imdecode`` / DALI RGB
  decode; ``inference.py`` converts BGR→RGB).
* AdaFace ``.ckpt``: a Lightning checkpoint whose ``state_dict`` holds
  ``model.``-prefixed keys of AdaFace's ``net.py`` IR network
  (``input_layer``, ``body.N.res_layer``/``shortcut_layer``, ``output_layer``).
  Its first stage uses a parameter-free strided shortcut and an affine-free
  final BatchNorm1d, so it maps onto the ``adaface_ir*`` variants of our
  IResNet (same blocks, renamed keys). AdaFace feeds **BGR** input
  (``inference.py``: ``np_img[:, :, ::-1]``).

The depth is read from the keys, so ``arch`` is optional; a layout that fits
neither format is a :class:`UserError` naming what is missing.

Command line: ``vlrface convert {insightface|adaface} IN OUT.pt`` (writes the
checkpoint with :func:`vlrface.checkpoint.save_model`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import UserError, brief
from ..preprocess import Preprocessing
from ..safeload import load_tensors
from .backbones.iresnet import ADAFACE_DEPTHS, DEPTHS, IResNet
from .face_model import FaceModel
from .registries import BACKBONES

# AdaFace Sequential indices → our module names.
_ADAFACE_STEM = {"0": "conv1", "1": "bn1", "2": "prelu"}
_ADAFACE_RES = {"0": "bn1", "1": "conv1", "2": "bn2", "3": "prelu", "4": "conv2", "5": "bn3"}
_ADAFACE_HEAD = {"0": "bn2", "3": "fc", "4": "features"}


def _read(path: str | Path) -> dict[str, Any]:
    """Tensors only (:func:`~vlrface.safeload.load_tensors`); Lightning ``.ckpt`` extras become inert stubs."""
    obj = load_tensors(path, what="weights file", foreign_ok=True)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _strip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def _arch_for(blocks: tuple[int, ...], table: dict[str, tuple[int, int, int, int]], what: str) -> str:
    for name, layers in table.items():
        if tuple(layers) == blocks:
            return name
    raise UserError(f"{what} with blocks per stage {blocks} matches none of: {', '.join(table)}")


def _load_strict(arch: str, sd: dict[str, Any], source: str) -> IResNet:
    backbone = BACKBONES.build(arch)
    want = set(backbone.state_dict())
    missing = sorted(want - set(sd))
    unexpected = sorted(set(sd) - want)
    if missing or unexpected:
        raise UserError(
            f"{source} does not fit {arch}: missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
        )
    try:
        backbone.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # shape mismatch
        raise UserError(f"{source} does not fit {arch}: {brief(RuntimeError(str(e).splitlines()[-1]))}") from None
    return backbone


def _as_face_model(backbone: IResNet) -> tuple[FaceModel, Preprocessing]:
    """Wrap without PAM/PRM; the backbone carries its weights' input convention."""
    return FaceModel(backbone, pam=False, prm=False).eval(), backbone.preprocessing


def import_insightface(path: str | Path, arch: str | None = None) -> tuple[FaceModel, Preprocessing]:
    """An ``arcface_torch`` IResNet ``.pth`` → ``(FaceModel without PAM/PRM, RGB preprocessing)``."""
    sd = _strip(_read(path), "module.")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = _strip(sd["state_dict"], "module.")
    stages = [{m.group(2) for k in sd if (m := re.match(rf"layer({s})\.(\d+)\.", k))} for s in range(1, 5)]
    if "conv1.weight" not in sd or not all(stages):
        raise UserError(f"{path}: not an insightface IResNet state dict (needs conv1.weight and layer1..layer4 keys)")
    arch = arch or _arch_for(tuple(len(s) for s in stages), DEPTHS, f"{path}")
    return _as_face_model(_load_strict(arch, sd, str(path)))


def adaface_to_iresnet(sd: dict[str, Any], layers: tuple[int, int, int, int]) -> dict[str, Any]:
    """Rename AdaFace ``net.py`` IR keys (no ``model.`` prefix) to our IResNet keys."""
    starts = [sum(layers[:i]) for i in range(4)]
    out: dict[str, Any] = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "input_layer" and parts[1] in _ADAFACE_STEM:
            new = [_ADAFACE_STEM[parts[1]], *parts[2:]]
        elif parts[0] == "output_layer" and parts[1] in _ADAFACE_HEAD:
            new = [_ADAFACE_HEAD[parts[1]], *parts[2:]]
        elif parts[0] == "body" and len(parts) > 3:
            n = int(parts[1])
            stage = max(i for i in range(4) if starts[i] <= n)
            prefix = [f"layer{stage + 1}", str(n - starts[stage])]
            if parts[2] == "res_layer" and parts[3] in _ADAFACE_RES:
                new = [*prefix, _ADAFACE_RES[parts[3]], *parts[4:]]
            elif parts[2] == "shortcut_layer":
                new = [*prefix, "downsample", *parts[3:]]
            else:
                raise UserError(f"unexpected AdaFace key {key!r}")
        else:
            raise UserError(f"unexpected AdaFace key {key!r}")
        out[".".join(new)] = value
    return out


def import_adaface(path: str | Path, arch: str | None = None) -> tuple[FaceModel, Preprocessing]:
    """An AdaFace ``.ckpt`` → ``(FaceModel with an adaface_ir* backbone, BGR preprocessing)``."""
    obj = _read(path)
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, dict):
        raise UserError(f"{path}: 'state_dict' is not a mapping")
    if any(k.startswith("model.") for k in sd):  # Lightning: drop head.* and other modules
        sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    if "input_layer.0.weight" not in sd or not blocks:
        raise UserError(f"{path}: not an AdaFace IR checkpoint (needs input_layer.* and body.N.* keys)")
    if arch is None:
        total = len(blocks)
        matches = [n for n, layers in ADAFACE_DEPTHS.items() if sum(layers) == total]
        if not matches:
            raise UserError(f"{path}: {total} residual blocks match none of: {', '.join(ADAFACE_DEPTHS)}")
        arch = matches[0]
    if arch not in ADAFACE_DEPTHS:
        raise UserError(f"AdaFace weights need one of: {', '.join(ADAFACE_DEPTHS)} (got {arch!r})")
    mapped = adaface_to_iresnet(sd, ADAFACE_DEPTHS[arch])
    return _as_face_model(_load_strict(arch, mapped, str(path)))


IMPORTERS = {"insightface": import_insightface, "adaface": import_adaface}
