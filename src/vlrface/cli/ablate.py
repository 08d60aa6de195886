"""``vlrface ablate``: RI components, forms, τ and the head zoo, fine-tuned over seeds from one pre-training."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..errors import UserError
from .app import app


def _list(text: str | None, what: str, cast=str) -> list | None:
    """``"0 1 2"`` or ``"0,1,2"`` → a list (None when not given)."""
    if text is None:
        return None
    try:
        return [cast(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--{what} {text!r}: give a list such as 0,1,2") from None


@app.command()
def ablate(
    plan: str = typer.Option("configs/ablation.yaml", "--plan", help="Ablation plan (a path or a shipped name)."),
    out: Path = typer.Option(Path("runs/ablation"), "--out", help="Output folder; a rerun skips finished runs."),
    seeds: str | None = typer.Option(None, "--seeds", help="Seeds, e.g. '0 1 2' or 0,1,2 [default: the plan's]."),
    datasets: str | None = typer.Option(None, "--datasets", help="Only these datasets of the plan (comma-separated)."),
    variants: str | None = typer.Option(None, "--variants", help="Only these variants of the plan (comma-separated)."),
    table_only: bool = typer.Option(False, "--table-only", help="Train nothing: tabulate the runs finished so far."),
) -> None:
    """Pre-train once per dataset, fine-tune every variant × seed identically, evaluate, tabulate (mean ± std)."""
    from ..ablate import Ablation, load_plan

    chosen = load_plan(plan, _list(seeds, "seeds", int), _list(datasets, "datasets"), _list(variants, "variants"))
    console = Console()
    ablation = Ablation(chosen, out, log=console.print)
    if table_only:
        ablation.summarise()
    else:
        ablation.run()
    console.print(f"table: {out / 'summary.md'}  figures: {out / 'summary.json'}  runs: {out}/DATASET/VARIANT/seedN/")
