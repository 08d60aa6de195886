"""Service verbs: identify, serve, align."""

from __future__ import annotations

import typer

from . import app
from .deploy import _CTX, _not_built


@app.command(context_settings=_CTX)
def identify(ctx: typer.Context) -> None:
    """Search probes in a gallery (FAISS); top-K with an 'unknown' threshold."""
    _not_built("identify", 7)


@app.command(context_settings=_CTX)
def serve(ctx: typer.Context) -> None:
    """HTTP service: embedding, quality and identification."""
    _not_built("serve", 7)


@app.command(context_settings=_CTX)
def align(ctx: typer.Context) -> None:
    """Detect (YuNet) and align faces to the 112×112 arcface template."""
    _not_built("align", 7)
