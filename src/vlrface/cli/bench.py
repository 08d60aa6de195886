"""``vlrface bench train|infer|search``: one verb, a registry of benchmarks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError
from .app import app, positive


def _train(o: dict) -> list[dict]:
    from ..bench.train import TrainBench, run

    keys = (
        "head",
        "ri",
        "batch_size",
        "steps",
        "amp",
        "channels_last",
        "compile",
        "fused",
        "partial_fc_rate",
        "num_classes",
        "peak_tflops",
        "data",
    )
    return [run(TrainBench(model=o["model"] or "iresnet50", **{k: o[k] for k in keys}))]


def _infer(o: dict) -> list[dict]:
    from ..bench.infer import run

    models = [o["model"]] if o["model"] else ["mobilefacenet", "iresnet50"]
    return run(models, batch_sizes=(1, 32), seconds=o["seconds"])


def _search(o: dict) -> list[dict]:
    from ..bench.search import run

    return [run(probes=o["probes"], gallery=o["gallery"], top=o["top"])]


BENCHES: dict[str, Callable[[dict], list[dict]]] = {"train": _train, "infer": _infer, "search": _search}


@app.command()
def bench(
    what: str = typer.Argument(..., help="train | infer | search"),
    model: str = typer.Option(None, help="train: backbone (iresnet50); infer: one backbone (default both)."),
    head: str = typer.Option("arcface", help="train: margin head."),
    ri: bool = typer.Option(True, "--ri/--no-ri", help="train: full RI objective (PAM, PRM, L_ID) or the head alone."),
    batch_size: int = typer.Option(128, min=1, help="train: batch per GPU."),
    steps: int = typer.Option(20, min=1, help="train: timed steps (after 5 warm-up steps)."),
    amp: str = typer.Option("bf16", help="train: none | bf16 | fp16."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="train: torch.compile the model."),
    fused: bool = typer.Option(True, "--fused/--no-fused", help="train: fused optimizer kernel (GPU)."),
    partial_fc_rate: float = typer.Option(
        1.0, max=1.0, callback=positive, help="train: PartialFC sample rate (< 1, or torchrun: PartialFC)."
    ),
    num_classes: int = typer.Option(93_431, min=1, help="train: identities in the head."),
    peak_tflops: float = typer.Option(
        None,
        callback=positive,
        help="train: device peak bf16 TFLOP/s for MFU (default: datasheet).",
    ),
    data: str = typer.Option(
        "device",
        help="train: device (random images made there) | loader (host TrainData, "
        "read ahead, pinned, copied over: the real input path).",
    ),
    seconds: float = typer.Option(3.0, callback=positive, help="infer: seconds of timing per case."),
    probes: int = typer.Option(3_728, min=1, help="search: probes (TinyFace: 3,728)."),
    gallery: int = typer.Option(157_871, min=1, help="search: gallery size (TinyFace: 157,871)."),
    top: int = typer.Option(20, min=1, help="search: neighbours per probe."),
    json_out: Path = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Benchmarks: training throughput (GPU), CPU inference (eager vs ONNX Runtime), gallery search."""
    if what not in BENCHES:
        raise UserError(f"unknown benchmark {what!r}; choose {', '.join(BENCHES)}")
    options = dict(locals())
    rows = BENCHES[what](options)
    from ..train.distributed import current

    if not current().is_main:
        return
    table = Table(title=f"vlrface bench {what}")
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console(width=250).print(table)
    print(json.dumps(rows, indent=1))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=1))
