"""Embedding verbs: embed (images → .npy + a JSON sidecar) and export (checkpoint → ONNX).

``embed`` writes two files, both atomically: ``FILE.npy`` (float32 ``[N, D]``,
L2-normalised, one row per usable image) and ``FILE.json`` beside it (row →
path, PRM quality, the checkpoint's SHA-256, the options, and every skipped
input with its reason). The format is documented in ``docs/serving.md``.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import typer

from ..data.readers import SkipReport
from ..errors import UserError
from ..serve.gallery import atomic_write
from ..serve.inputs import image_files
from .app import app
from .pretrained import CKPT_OPTION, MODEL_OPTION, resolve_ckpt

EMBEDDINGS_FORMAT = "vlrface-embeddings-1"


def _writable(out: Path, suffix: str, option: str) -> None:
    """Fail before the (long) work if the output cannot be written; creates missing parent folders."""
    if out.suffix.lower() != suffix:
        raise UserError(f"{option} {out}: the file name must end in {suffix}")
    if out.is_dir():
        raise UserError(f"{option} {out} is a folder: give a file name ending in {suffix}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder for {option} {out}: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise UserError(f"cannot write {option} {out}: {e.strerror or e}") from None


@app.command()
def embed(
    inputs: list[Path] = typer.Argument(..., help="Images, folders (recursive) or .txt file lists (one path a line)."),
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    out: Path = typer.Option(..., help="Output FILE.npy; FILE.json (paths, quality, skipped) is written beside it."),
    align: bool = typer.Option(False, help="Detect (YuNet) and align whole photos first; no-face images are reported."),
    flip: bool = typer.Option(False, "--flip", help="Add the mirrored image's embedding (test-time augmentation)."),
    batch_size: int = typer.Option(64, min=1, help="Images per model call (images are read 4 batches at a time)."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:1 …"),
) -> None:
    """Images, folders or a file list → L2-normalised embeddings (.npy) + paths and quality (.json)."""
    from ..serve.app import FaceService

    ckpt = resolve_ckpt(ckpt, model)
    files = [f for f, _ in image_files(inputs)]
    service = FaceService(ckpt, align=align, device=device, flip=flip, batch_size=batch_size)
    _writable(out, ".npy", "--out")
    skips = SkipReport()
    emb, q, keep = service.encode_files(files, skips, chunk=4 * batch_size)
    if not keep:
        raise UserError(f"no usable image among {len(files)} input(s); nothing written ({skips.summary()})")
    has_prm = service.model.prm is not None
    sidecar = out.with_suffix(".json")
    meta = {
        "format": EMBEDDINGS_FORMAT,
        "checkpoint": str(ckpt),
        "model": model,
        "checkpoint_sha256": service.checkpoint,
        "dim": int(emb.shape[1]),
        "count": len(keep),
        "align": align,
        "flip": flip,
        "paths": [str(files[i]) for i in keep],
        "quality": [float(x) for x in q] if has_prm else None,
        "skipped": [{"path": p, "reason": r} for p, r in skips.skipped],
    }
    buf = io.BytesIO()
    np.save(buf, emb.astype(np.float32, copy=False))
    try:
        atomic_write(out, lambda f: f.write(buf.getvalue()))
        atomic_write(sidecar, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"embedded {len(keep)} of {len(files)} image(s) → {out} [{len(keep)}×{emb.shape[1]}], {sidecar}")
    skips.print_summary()


@app.command()
def export(
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    onnx: Path = typer.Option(..., help="Output FILE.onnx (written atomically)."),
    opset: int = typer.Option(17, help="ONNX opset (11 or newer)."),
    flip: bool = typer.Option(
        False, "--flip", help="Bake flip test-time augmentation into the graph (2× the compute)."
    ),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on batch 1 and 7."),
) -> None:
    """Export a checkpoint to ONNX: dynamic batch; outputs embedding (and quality with a PRM)."""
    from ..checkpoint import load_model
    from ..serve.app import checkpoint_hash
    from ..serve.export import export_onnx, max_abs_difference

    ckpt = resolve_ckpt(ckpt, model)
    net, pre, _ = load_model(ckpt, "cpu")
    _writable(onnx, ".onnx", "--onnx")
    proto = export_onnx(net, onnx, pre, opset=opset, flip=flip, metadata={"checkpoint_sha256": checkpoint_hash(ckpt)})
    shapes = [
        f"{o.name} [{', '.join(d.dim_param or str(d.dim_value) for d in o.type.tensor_type.shape.dim)}]"
        for o in proto.graph.output
    ]
    print(
        f"exported {ckpt} → {onnx} ({onnx.stat().st_size / 2**20:.1f} MiB, opset {opset}); outputs: {', '.join(shapes)}"
    )
    if check:
        diff = max_abs_difference(net, onnx, pre, flip=flip)
        print(f"ONNX Runtime vs PyTorch on batch 1 and 7: max abs difference {diff:.1e}")
        if diff > 1e-4:
            raise UserError(f"ONNX Runtime output differs from PyTorch by {diff:.1e} (> 1e-4): try another --opset")
