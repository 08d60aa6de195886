"""``vlrface train CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from .app import app


@app.command()
def train(
    config: str = typer.Argument(..., help="YAML recipe: a path, or the name of a shipped one (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.steps=100 ri.tau=3"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train from a YAML recipe. Resumes from OUT/last.pt when it exists; writes OUT/model.pt."""
    from ..config import load_config
    from ..train.trainer import Trainer

    cfg = load_config(config, overrides or [])
    trainer = Trainer(cfg, progress=progress)
    console = Console(stderr=True)
    if trainer.step:
        console.print(f"resuming {cfg.out}/last.pt at step {trainer.step}/{cfg.train.steps}")
    final = trainer.fit()
    console.print(f"saved {trainer.out / 'model.pt'}")
    if final:
        console.print(json.dumps(final, indent=2))
