"""The quality verb: per-image quality scores from any scorer in :mod:`vlrface.quality` → CSV.

Images are prepared as ``identify`` prepares probes (:class:`~vlrface.serve.app.FaceService`:
plain resize of a cropped face, or YuNet + 5-point alignment with ``--align``).
Unreadable files and images without a face are counted and named on stderr.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
import typer

from ..data.readers import SkipReport
from ..errors import UserError
from ..quality import SCORERS, build_scorer
from ..serve.inputs import image_files, read_faces
from .app import app
from .pretrained import CKPT_OPTION, MODEL_OPTION, resolve_ckpt


@app.command()
def quality(
    inputs: list[Path] = typer.Argument(..., help="Images, folders (searched recursively) or .txt file lists."),
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    method: str = typer.Option(..., help=f"Scorer: {', '.join(SCORERS.names())} (see docs/quality.md)."),
    out: Path = typer.Option(None, help="CSV file with columns path,quality (default: print the CSV)."),
    align: bool = typer.Option(False, help="Detect (YuNet) and align whole photos first."),
    batch_size: int = typer.Option(64, min=1, help="Faces per forward pass."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:1 …"),
) -> None:
    """Quality scores (higher = better) of face images, one CSV row per readable image."""
    from ..checkpoint import load_checkpoint
    from ..serve.app import FaceService

    SCORERS.get(method)
    ckpt = resolve_ckpt(ckpt, model)
    files = [f for f, _ in image_files(inputs)]
    service = FaceService(ckpt, align=align, device=device)
    scorer = build_scorer(method, service.model, load_checkpoint(ckpt))
    skips = SkipReport()
    paths, scores = [], []
    for keep, faces in read_faces(files, service.face, skips):
        if faces:
            scores.append(scorer.score(service.preprocessing.to_tensor(faces), batch_size))
            paths += [files[i] for i in keep]
    if not paths:
        raise UserError(f"no readable face image among {len(files)} input(s): {skips.summary()}")
    scores_all = np.concatenate(scores)
    if out is None:
        _write_csv(sys.stdout, paths, scores_all)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            _write_csv(f, paths, scores_all)
        print(f"quality ({method}) of {len(paths)} of {len(files)} image(s) → {out}")
    skips.print_summary()


def _write_csv(f: TextIO, paths: list[Path], scores: np.ndarray) -> None:
    w = csv.writer(f)
    w.writerow(["path", "quality"])
    w.writerows((str(p), f"{q:.6g}") for p, q in zip(paths, scores))
