"""``vlrface eval --protocol NAME --data DIR --ckpt CKPT``."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("eval")
def evaluate(
    protocol: str = typer.Option(..., "--protocol", help="Protocol name (see docs/evaluation.md)."),
    data: Path = typer.Option(..., "--data", help="Dataset root in the protocol's layout."),
    ckpt: Path = typer.Option(..., "--ckpt", help="vlrface checkpoint."),
    out: Path = typer.Option(Path("runs/eval"), "--out", help="Output folder."),
    probe_size: list[int] = typer.Option(None, "--probe-size", help="Degrade probes to PX (repeatable); default: the protocol's sizes."),
    flip: bool = typer.Option(False, "--flip", help="Add the embedding of the mirrored image."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 …; auto = cuda when available."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/vlrface/embeddings)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-extract every embedding."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the raw-pixel baseline."),
) -> None:
    """Evaluate a checkpoint on a protocol; writes metrics.json, report.md and plots."""
    from ..eval.run import default_cache_dir
    from ..eval.run import evaluate as run

    metrics = run(protocol, data, ckpt, out, probe_sizes=probe_size or None, flip=flip, batch_size=batch_size,
                  device=device, cache_dir=None if no_cache else cache_dir or default_cache_dir(),
                  baseline=not no_baseline)
    for setting, r in metrics["results"]["model"].items():
        figs = [f"rank-1 {100 * r['cmc'][1]:.2f}%" if "cmc" in r else None,
                f"TAR@FAR=1e-3 {100 * r['verification']['tar_at_far'][0.001]:.2f}%" if "verification" in r else None]
        typer.echo(f"{setting}: " + ", ".join(f for f in figs if f))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
