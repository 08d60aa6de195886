"""The enrol verb: add new identities to a model from a few shots."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from .app import app, finite
from .pretrained import MODEL_OPTION, resolve_ckpt


@app.command()
def enrol(
    ckpt: Path | None = typer.Option(None, help="Checkpoint to enrol into (kept unchanged). Give this or --model."),
    model: str | None = MODEL_OPTION,
    shots: Path = typer.Option(..., help="Folder of the new identities: ID/*.jpg, a few face images each."),
    out: Path = typer.Option(..., help="The new checkpoint (written atomically)."),
    steps: int = typer.Option(20, min=0, help="BN-only fine-tuning steps; 0 = weight imprinting only."),
    lr: float = typer.Option(1e-3, min=0.0, callback=finite, help="Adam learning rate of the BatchNorm γ/β."),
    batch_size: int = typer.Option(64, min=1),
    max_shots: int = typer.Option(None, min=1, help="Use at most N images per identity (first by file name)."),
    crop: str = typer.Option("default", help="Face crop of the shots: default (resize), lfw, att."),
    gallery: Path = typer.Option(None, help="Also add the shots, embedded by the new model, to this gallery folder."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, cuda:1 …"),
) -> None:
    """Few-shot enrolment: weight imprinting + BN-only fine-tuning (docs/enrol.md)."""
    from ..data.readers import SkipReport
    from ..train.enrol import enrol as run

    if gallery is not None and gallery.exists() and not gallery.is_dir():  # before the enrolment is written
        raise UserError(f"--gallery {gallery} is a file, not a folder: give a folder (created if missing)")
    skips = SkipReport()
    result = run(
        resolve_ckpt(ckpt, model),
        shots,
        out,
        crop=crop,
        max_shots=max_shots,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
        skips=skips,
    )
    loss = (
        f"; loss {result.losses[0]:.3f} → {result.losses[-1]:.3f} over {len(result.losses)} BN steps"
        if result.losses
        else ""
    )
    typer.echo(
        f"enrolled {len(result.names)} identities as head rows {result.first}–{result.first + len(result.names) - 1}"
        f"{loss} → {out}"
    )
    if gallery is not None:
        _add_to_gallery(out, shots, gallery, crop, max_shots, device)
    skips.print_summary()


def _add_to_gallery(ckpt: Path, shots_dir: Path, gallery: Path, crop: str, max_shots: int | None, device: str) -> None:
    """The gallery view: every shot, embedded by the enrolled model, as an entry of its identity."""
    from ..serve.app import FaceService
    from ..train.enrol import read_shots

    shots = read_shots(shots_dir, crop, max_shots)
    faces = list((shots.images.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    service = FaceService(ckpt, gallery, device=device)  # a gallery of another checkpoint is refused: embeddings differ
    service.enrol([shots.names[y] for y in shots.labels.tolist()], faces)
    g = service.gallery
    typer.echo(f"gallery: {len(g)} images of {len(g.identities)} identities → {gallery}")
