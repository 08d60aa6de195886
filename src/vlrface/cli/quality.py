"""The quality verb: per-image quality scores from any scorer in vlrface.quality."""

from __future__ import annotations

import typer

from ..errors import NotBuiltError
from . import app

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_CTX)
def quality(ctx: typer.Context) -> None:
    """Quality scores (ri, norm, magface, nan, serfiq, crfiqa) → CSV."""
    raise NotBuiltError("'vlrface quality' is not built yet (issue #7)")
