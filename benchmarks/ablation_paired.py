"""Paired rank-1 differences between finished ablation runs on the synthetic held-out set (issue 16).

    python benchmarks/ablation_paired.py --out runs/ablation --seeds 0 1 2 3 4 \\
        --variants arcface +MSE +MSE-branch full full-branch full-predicted full-paper \\
        --pairs +MSE-branch:+MSE full-branch:full full-predicted:full full-paper:full

``vlrface ablate`` keeps mean ± std per variant; this re-embeds the synthetic
held-out probes (the plan's ``synthetic`` set, degraded to 16 and 8 px with the
seeds ``vlrface.eval.probe_sets.evaluate`` uses, so the rank-1 means equal the
summary's) with every run's ``model.pt``, keeps each probe's rank-1 hit and
reports, for every variant against ArcFace and for each ``--pairs A:B``, the
paired difference with its 95 % bootstrap interval over probes and seeds
(:func:`vlrface.eval.paired.paired_bootstrap`). Writes ``OUT/paired.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vlrface.ablate import load_plan
from vlrface.checkpoint import load_model
from vlrface.data.degrade import degrade
from vlrface.eval import metrics
from vlrface.eval.paired import paired_bootstrap
from vlrface.eval.probe_sets import model_embedder, synthetic_probe_set

SIZES = (16, 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the ablation's --out folder")
    ap.add_argument("--plan", default="configs/ablation.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--variants", nargs="+", required=True, help="arcface first, then the variants to compare")
    ap.add_argument("--pairs", nargs="*", default=[], help="extra comparisons A:B (A − B)")
    a = ap.parse_args()
    s = load_plan(a.plan).synthetic
    ps = synthetic_probe_set(s.seed, s.identities, s.probes_per_identity, s.offset)
    probes = {z: degrade(ps.probes, z, generator=torch.Generator().manual_seed(z)) for z in SIZES}
    hits: dict[tuple[str, int, int], np.ndarray] = {}
    for v in a.variants:
        for seed in a.seeds:
            model, pre, _ = load_model(a.out / "synthetic" / v / f"seed{seed}" / "model.pt")
            embed = model_embedder(model.eval(), pre)
            gallery, _ = embed(ps.gallery)
            for z in SIZES:
                p, _ = embed(probes[z])
                stats = metrics.embedding_probe_stats(p, ps.probe_ids, gallery, ps.gallery_ids)
                hits[(v, seed, z)] = (stats.rank == 1).astype(int)

    def table(v: str, z: int) -> np.ndarray:
        return np.array([hits[(v, seed, z)] for seed in a.seeds])

    pairs = [(v, "arcface") for v in a.variants if v != "arcface"] + [tuple(p.split(":", 1)) for p in a.pairs]
    results: dict = {}
    for z in SIZES:
        for v in a.variants:
            per_seed = table(v, z).mean(axis=1)
            sd = per_seed.std(ddof=1) if len(per_seed) > 1 else 0.0
            print(f"{z}px {v}: rank-1 {per_seed.mean():.3f} ± {sd:.3f}")
        for x, y in pairs:
            d = paired_bootstrap(table(x, z), table(y, z), seed=0)
            results[f"{z}px {x} − {y}"] = d.to_dict()
            print(f"{z}px {x} − {y}: {d}")
    (a.out / "paired.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
