"""Deployment verbs: embed, quality, export, enrol."""

from __future__ import annotations

import typer

from ..errors import NotBuiltError
from . import app

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


def _not_built(verb: str, issue: int) -> None:
    raise NotBuiltError(f"'vlrface {verb}' is not built yet (issue #{issue})")


@app.command(context_settings=_CTX)
def embed(ctx: typer.Context) -> None:
    """Images, folders or a file list → embeddings (.npy) + ids."""
    _not_built("embed", 7)


@app.command(context_settings=_CTX)
def quality(ctx: typer.Context) -> None:
    """Quality scores (ri, norm, magface, nan, serfiq, crfiqa) → CSV."""
    _not_built("quality", 7)


@app.command(context_settings=_CTX)
def export(ctx: typer.Context) -> None:
    """Export a checkpoint to ONNX (dynamic batch)."""
    _not_built("export", 7)


@app.command(context_settings=_CTX)
def enrol(ctx: typer.Context) -> None:
    """Few-shot enrolment: weight imprinting + BN-only fine-tuning."""
    _not_built("enrol", 9)
