"""The ``vlrface`` command. Each verb group lives in its own module below.

``main`` turns user mistakes (:class:`~vlrface.errors.UserError`) into a
one-line message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from ..errors import UserError, brief

# Verb modules register their commands on ``app`` when imported.
from . import ablate, bench, convert, demo, embed, enrol, evaluate, pretrained, quality, service, train  # noqa: F401
from .app import app

# typer ≥ 0.20 ships its own copy of click: its exceptions derive from typer.TyperException, not click's
_USAGE = (click.ClickException, typer.TyperException)
_EXIT = (click.exceptions.Exit, typer.Exit)
_ABORT = (click.exceptions.Abort, typer.Abort, KeyboardInterrupt)


def error(message: str) -> None:
    """The one line every refused command prints (stderr): ``vlrface: error: …``."""
    print(f"vlrface: error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; a user mistake is one line on stderr and exit code 2, never a traceback."""
    try:
        rv = app(args=argv, prog_name="vlrface", standalone_mode=False)
    except _EXIT as e:
        sys.exit(e.exit_code)
    except _USAGE as e:  # usage errors: unknown verb or option, a value out of range, a missing argument …
        show = getattr(e, "show", None)  # typer's click copy has it; its TyperException base does not say so
        if type(e).__name__ == "NoArgsIsHelpError" and show is not None:  # bare "vlrface" or "vlrface VERB"
            show()
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        error(f"{e.format_message()}{hint}")
        sys.exit(2 if getattr(e, "exit_code", 1) in (1, 2) else e.exit_code)
    except _ABORT:
        print("vlrface: interrupted", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        error(str(e))
        sys.exit(2)
    except OSError as e:  # the environment refused: permission, disk full, a path that is a folder …
        error(brief(e, 300))
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
