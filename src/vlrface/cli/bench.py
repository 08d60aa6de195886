"""``vlrface bench train|infer|search``."""

from __future__ import annotations

import typer

from ..errors import NotBuiltError
from . import app


@app.command()
def bench(what: str = typer.Argument(..., help="train | infer | search")) -> None:
    """Benchmarks: training throughput, CPU inference, gallery search."""
    raise NotBuiltError(f"'vlrface bench {what}' is not built yet (issue #8)")
