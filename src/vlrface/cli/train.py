"""``vlrface train CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import NotBuiltError
from . import app


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML recipe (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.steps=100"),
) -> None:
    """Train a model from a YAML recipe; resumes from OUT/last.pt when present."""
    raise NotBuiltError("'vlrface train' is not built yet (issue #3)")
