"""One evaluation run: checkpoint + protocol → ``metrics.json``, ``report.md``, plots.

The raw-pixel baseline runs on the same files, crops and probe sizes, so
every report shows the model beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import load_model, resolve_device
from ..data.readers import SkipReport
from ..errors import UserError
from ..preprocess import Preprocessing
from .embed import EmbeddingCache, EmbedFn, InferenceModel, ModelEmbedder, RawPixelEmbedder, file_key
from .matchers import MATCHERS
from .protocols import PROTOCOLS
from .report import write_eval_report

SCHEMA = "vlrface-eval-1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlrface" / "embeddings"


def evaluate(
    protocol: str,
    data: str | Path,
    ckpt: str | Path,
    out: str | Path,
    *,
    probe_sizes: Sequence[int] | None = None,
    flip: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    cache_dir: str | Path | None = None,
    baseline: bool = True,
    progress: bool = True,
    matcher: str | None = None,
    matcher_params: dict | None = None,
) -> dict:
    """Run ``protocol`` on ``data`` with the checkpoint (and the raw-pixel baseline); write the report.

    ``matcher`` (a :data:`~vlrface.eval.matchers.MATCHERS` name) scores the
    gallery per identity; None ranks every gallery image by cosine.
    """
    device = resolve_device(device)
    match = None if matcher is None else MATCHERS.build(matcher, **(matcher_params or {}))
    match_meta = None if match is None else {"name": matcher, **vars(match)}  # its parameters, before fitting
    proto = PROTOCOLS.build(protocol).load(data)  # validate the layout before loading any weights
    model, pre, _ = load_model(ckpt, device)
    skips = SkipReport()
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    embedders: dict[str, EmbedFn] = {
        "model": ModelEmbedder(
            model,
            pre,
            flip=flip,
            batch_size=batch_size,
            device=device,
            cache=cache,
            model_key=file_key(Path(ckpt)),
            progress=progress,
            skips=skips,
        )
    }
    if baseline:
        embedders["raw-pixel"] = RawPixelEmbedder(progress=progress, skips=SkipReport())  # same files: count once
    with torch.inference_mode():
        results = {name: proto.run(fn, probe_sizes, match) for name, fn in embedders.items()}
    skips.print_summary()
    metrics = {
        "schema": SCHEMA,
        "protocol": protocol,
        "description": proto.description,
        "data": str(Path(data).resolve()),
        "checkpoint": str(Path(ckpt).resolve()),
        "flip": flip,
        "matcher": match_meta,
        "probe_sizes": list(probe_sizes) if probe_sizes else None,
        "skipped_images": len({p for p, _ in skips.skipped}),
        "results": results,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=True))
    write_eval_report(json.loads((out / "metrics.json").read_text()), out)
    return metrics


def training_evaluator(
    protocols: Sequence[str],
    data: dict[str, str],
    probe_sizes: Sequence[int | None],
    device: str | torch.device = "cpu",
):
    """``(model, preprocessing) → {protocol: {setting: {rank1, rank5, map}}}`` for ``train.eval_every``.

    The protocols' layouts are validated once, when training starts, so a
    wrong path fails before the first step rather than at the first evaluation.
    """
    missing = [p for p in protocols if p not in data]
    if missing:
        raise UserError(
            f"eval.data has no folder for protocol(s) {', '.join(missing)} (e.g. eval.data.{missing[0]}=DIR)"
        )
    loaded = {name: PROTOCOLS.build(name).load(data[name]) for name in protocols}

    def run(model: InferenceModel, preprocessing: Preprocessing) -> dict:
        embed = ModelEmbedder(model, preprocessing, device=device, progress=False)
        with torch.inference_mode():
            results = {name: proto.run(embed, list(probe_sizes)) for name, proto in loaded.items()}
        return {
            name: {s: {"rank1": r["cmc"][1], "rank5": r["cmc"][5], "map": r["map"]} for s, r in settings.items()}
            for name, settings in results.items()
        }

    return run
