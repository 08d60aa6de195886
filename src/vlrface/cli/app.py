"""The typer application every verb module registers its commands on, and shared option checks."""

import math

import typer

app = typer.Typer(
    name="vlrface",
    help="Very low-resolution face recognition and quality estimation (Recognizability Index).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def finite(value: float | None) -> float | None:
    """Option callback: refuse ``nan`` and ``±inf`` (click's ``min``/``max`` let ``nan`` through)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def positive(value: float | None) -> float | None:
    """Option callback: a finite number above zero (rates, durations, temperatures)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a number above 0")
    return value
