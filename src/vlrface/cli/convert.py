"""``vlrface convert``: published insightface / AdaFace weights → a vlrface checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from .app import app


@app.command()
def convert(
    source: str = typer.Argument(..., help="Where the weights come from: insightface (.pth) or adaface (.ckpt)."),
    weights: Path = typer.Argument(..., help="The published weights file."),
    out: Path = typer.Argument(..., help="vlrface checkpoint to write (.pt)."),
    arch: str | None = typer.Option(None, help="Backbone name (default: read from the keys)."),
) -> None:
    """Import insightface arcface_torch / AdaFace weights (read as tensors only) into a checkpoint."""
    from ..checkpoint import save_model
    from ..models.convert import IMPORTERS

    if source not in IMPORTERS:
        raise UserError(f"unknown source {source!r}; choose one of: {', '.join(sorted(IMPORTERS))}")
    model, prep = IMPORTERS[source](weights, arch)
    typer.echo(save_model(model, prep, out))
