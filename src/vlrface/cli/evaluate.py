"""``vlrface eval --protocol NAME --data DIR --ckpt CKPT``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from .app import app, finite
from .pretrained import CKPT_OPTION, MODEL_OPTION, resolve_ckpt


@app.command("eval")
def evaluate(
    protocol: str = typer.Option(..., "--protocol", help="Protocol name (see docs/evaluation.md)."),
    data: Path = typer.Option(..., "--data", help="Dataset root in the protocol's layout."),
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    out: Path = typer.Option(Path("runs/eval"), "--out", help="Output folder."),
    probe_size: list[int] = typer.Option(
        None, "--probe-size", min=1, help="Degrade probes to PX (repeatable); default: the protocol's sizes."
    ),
    flip: bool = typer.Option(False, "--flip", help="Add the embedding of the mirrored image."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 …; auto = cuda when available."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/vlrface/embeddings)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-extract every embedding."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the raw-pixel baseline."),
    matcher: str = typer.Option(
        None,
        "--matcher",
        help="Score gallery identities with: cosine (best image) or nac "
        "(docs/nac.md); default: rank every gallery image by cosine.",
    ),
    nac_k: int = typer.Option(None, "--nac-k", min=1, help="NAC: prototypes in the softmax (default 16)."),
    nac_temperature: float = typer.Option(
        None, "--nac-temperature", min=1e-6, callback=finite, help="NAC: softmax temperature T (default 1)."
    ),
) -> None:
    """Evaluate a checkpoint on a protocol; writes metrics.json, report.md and plots."""
    from ..eval.run import default_cache_dir
    from ..eval.run import evaluate as run

    params = {k: v for k, v in (("k", nac_k), ("temperature", nac_temperature)) if v is not None}
    if params and matcher != "nac":
        raise UserError("--nac-k / --nac-temperature need --matcher nac")
    metrics = run(
        protocol,
        data,
        resolve_ckpt(ckpt, model),
        out,
        probe_sizes=probe_size or None,
        flip=flip,
        batch_size=batch_size,
        device=device,
        cache_dir=None if no_cache else cache_dir or default_cache_dir(),
        baseline=not no_baseline,
        matcher=matcher,
        matcher_params=params,
    )
    for setting, r in metrics["results"]["model"].items():
        figs = [
            f"rank-1 {100 * r['cmc'][1]:.2f}%" if "cmc" in r else None,
            f"DIR@FAR=1e-2 {100 * r['open_set']['dir_at_far'][0.01]:.2f}%" if "open_set" in r else None,
            f"TAR@FAR=1e-3 {100 * r['verification']['tar_at_far'][0.001]:.2f}%" if "verification" in r else None,
        ]
        typer.echo(f"{setting}: " + ", ".join(f for f in figs if f))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
