"""Embedding verbs: embed (images → .npy + ids) and export (checkpoint → ONNX)."""

from __future__ import annotations

import typer

from ..errors import NotBuiltError
from . import app

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_CTX)
def embed(ctx: typer.Context) -> None:
    """Images, folders or a file list → embeddings (.npy) + ids."""
    raise NotBuiltError("'vlrface embed' is not built yet (issue #7)")


@app.command(context_settings=_CTX)
def export(ctx: typer.Context) -> None:
    """Export a checkpoint to ONNX (dynamic batch)."""
    raise NotBuiltError("'vlrface export' is not built yet (issue #7)")
