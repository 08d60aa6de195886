"""``vlrface demo``: synthetic HR→VLR, ArcFace baseline vs RI, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import NotBuiltError
from . import app


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Small run (≤ 3 min on 2 CPU cores)."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    att: Path | None = typer.Option(None, "--att", help="ORL/AT&T folder for the att-vlr protocol."),
) -> None:
    """Pre-train on synthetic faces, fine-tune ArcFace vs RI on HR+VLR, evaluate, report."""
    raise NotBuiltError("'vlrface demo' is not built yet (issue #4)")
