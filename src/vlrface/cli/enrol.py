"""The enrol verb: add new identities to a model from a few shots."""

from __future__ import annotations

import typer

from ..errors import NotBuiltError
from . import app

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_CTX)
def enrol(ctx: typer.Context) -> None:
    """Few-shot enrolment: weight imprinting + BN-only fine-tuning."""
    raise NotBuiltError("'vlrface enrol' is not built yet (issue #9)")
