"""ONNX export: the model a deployment runs, without PyTorch.

The graph is :meth:`FaceModel.infer <vlrface.models.FaceModel.infer>` — the
same function the service and the evaluation call — with a dynamic batch axis:

* input ``input``: float32 ``[batch, 3, S, S]``, already preprocessed
  (``(x / 255 − mean) / std`` in the checkpoint's colour order);
* output ``embedding``: float32 ``[batch, D]``, L2-normalised;
* output ``quality``: float32 ``[batch]``, the PRM score — only when the model
  has a PRM.

The preprocessing convention, the checkpoint's SHA-256 and ``flip`` travel in
the file's ``metadata_props``, so a consumer can feed the model correctly
without the checkpoint. The file is checked by ``onnx.checker`` and written
atomically (temp file + ``os.replace``): a failed export never leaves a
half-written ``.onnx`` behind, nor destroys the previous one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
import torch

from ..errors import UserError
from ..models.face_model import FaceModel
from ..preprocess import Preprocessing
from .gallery import atomic_write

OPSET = 17
MIN_OPSET = 11  # older opsets lack ops the backbones use


class DeployedModel(torch.nn.Module):
    """``FaceModel`` → ``(embedding,)`` or ``(embedding, quality)``: ONNX outputs must be tensors, never None."""

    def __init__(self, model: FaceModel, flip: bool = False) -> None:
        super().__init__()
        self.model, self.flip = model, flip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        emb, q = self.model.infer(x, self.flip)
        return (emb,) if q is None else (emb, q)


def output_names(model: FaceModel) -> list[str]:
    return ["embedding"] if model.prm is None else ["embedding", "quality"]


def to_onnx(
    model: FaceModel,
    preprocessing: Preprocessing = Preprocessing(),
    *,
    opset: int = OPSET,
    flip: bool = False,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Trace ``model`` (in eval mode, on CPU) into a checked ONNX model with a dynamic batch axis."""
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old: use {MIN_OPSET} or newer (default {OPSET})")
    model = model.eval()
    names = output_names(model)
    x = torch.zeros(2, 3, preprocessing.size, preprocessing.size, device=next(model.parameters()).device)
    buf = io.BytesIO()
    try:
        # the wrapper in eval mode: the exporter restores its mode, and with it the model's, afterwards
        torch.onnx.export(
            DeployedModel(model, flip).eval(),
            (x,),
            buf,  # type: ignore[arg-type]  # f takes a file-like object too (torch.onnx.export's docs)
            input_names=["input"],
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["input", *names]},
            opset_version=opset,
            dynamo=False,
        )
    except RuntimeError as e:
        if "opset" not in str(e).lower():
            raise
        raise UserError(f"--opset {opset}: {str(e).splitlines()[0][:120]} (the default, {OPSET}, works)") from None
    proto = onnx.load_from_string(buf.getvalue())
    dim = proto.graph.output[0].type.tensor_type.shape.dim[1]  # the tracer leaves D symbolic after normalize
    dim.Clear()
    dim.dim_value = model.embedding_size
    meta = {"preprocessing": json.dumps(preprocessing.to_dict()), "flip": json.dumps(flip), **(metadata or {})}
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name = "vlrface"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(
    model: FaceModel,
    path: str | Path,
    preprocessing: Preprocessing = Preprocessing(),
    *,
    opset: int = OPSET,
    flip: bool = False,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Write ``model`` as ONNX to ``path`` atomically (parent folders created); returns the model written."""
    path = Path(path)
    proto = to_onnx(model, preprocessing, opset=opset, flip=flip, metadata=metadata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return proto


def max_abs_difference(
    model: FaceModel,
    path: str | Path,
    preprocessing: Preprocessing = Preprocessing(),
    *,
    flip: bool = False,
    batch_sizes: tuple[int, ...] = (1, 7),
    seed: int = 0,
) -> float:
    """Largest |ONNX Runtime − PyTorch| over every output, on random inputs in the network's range.

    Run after every export: an exporter or runtime bug shows up here, not in
    a deployment's accuracy months later.
    """
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for b in batch_sizes:
        x = torch.rand(b, 3, preprocessing.size, preprocessing.size, generator=gen) * 2 - 1
        with torch.inference_mode():
            ref = [t.cpu().numpy() for t in DeployedModel(model.eval(), flip)(x.to(next(model.parameters()).device))]
        got = sess.run(None, {"input": x.numpy()})
        worst = max(worst, *(float(np.abs(g - r).max()) for g, r in zip(got, ref)))
    return worst
