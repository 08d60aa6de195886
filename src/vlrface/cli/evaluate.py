"""``vlrface eval --protocol NAME --data DIR --ckpt CKPT``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import NotBuiltError
from . import app


@app.command("eval")
def evaluate(
    protocol: str = typer.Option(..., "--protocol", help="Protocol name."),
    data: Path = typer.Option(..., "--data", help="Dataset root."),
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint."),
    out: Path = typer.Option(Path("runs/eval"), "--out", help="Output folder."),
) -> None:
    """Evaluate a checkpoint on a protocol; writes metrics.json, report.md and plots."""
    raise NotBuiltError("'vlrface eval' is not built yet (issue #5)")
