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
from .errors import UserError
from .models import BACKBONES
from .models.face_model import FaceModel, build_model
from .preprocess import Preprocessing

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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise UserError(f"cannot read checkpoint {path}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a vlrface checkpoint (for insightface/AdaFace weights see 'vlrface convert')")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FaceModel, Preprocessing, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns ``(model.eval(), preprocessing, ckpt)``."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"])
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
