"""The typer application every verb module registers its commands on."""

import typer

app = typer.Typer(
    name="vlrface",
    help="Very low-resolution face recognition and quality estimation (Recognizability Index).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
