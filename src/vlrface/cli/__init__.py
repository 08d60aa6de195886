"""The ``vlrface`` command. Each verb group lives in its own module below.

``main`` turns user mistakes (:class:`~vlrface.errors.UserError`) into a
one-line message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import sys

import click

from ..errors import UserError

# Verb modules register their commands on ``app`` when imported.
from . import ablate, bench, convert, demo, embed, enrol, evaluate, quality, service, train  # noqa: F401
from .app import app


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, map user errors to exit code 2."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:  # usage errors: bad option, missing path …
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("vlrface: interrupted", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        print(f"vlrface: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
