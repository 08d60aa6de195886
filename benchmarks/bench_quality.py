"""Face-quality scorers compared by ERC / EDC on the same model: ``python benchmarks/bench_quality.py``.

Data (no tuning on test people; nothing here is fitted at all):
* **synthetic** — the test set the demo reported on (sizes from its
  ``report.json``; 100 held-out synthetic identities × 6 probes for the quick
  run of 2026-11-28, ``vlrface.eval.probe_sets.synthetic_probe_set``), HR
  gallery, probes degraded to 16 and 8 px;
* **att-vlr** — ORL/AT&T subjects 21–40 as ``eval.protocols.AttVLR`` defines
  them: gallery image 1 at full resolution, images 2–10 degraded to 16/12/8 px.
Each size is a setting, and ``mixed`` pools a set's sizes (does the scorer also
rank 8 px below 16 px?). Degradation is seeded as in the demo.

* **lfw-vlr** (``--lfw``) — the lfw-vlr protocol's gallery and probes, probes
  degraded to 16/12/8 px, for real-face models such as the SFace fine-tunes.

Models: ``--model NAME=CHECKPOINT`` (repeatable; e.g. the SFace fine-tunes of
``benchmarks/lfw_sface.py``, whole models, so no trunk cache is involved), or by
default the quick demo's checkpoints (``vlrface demo --quick --out runs/demo-quick``):
``ri`` (PAM + PRM, every scorer) and ``arcface`` (the scorers that need no
PRM); with ``--magface``, a MagFace fine-tune trained here once with the demo's
ArcFace-stage recipe, only the head swapped, so the magface scorer meets the
model it is meant for. ``random`` (seeded uniform quality) is the reference
that rejects without information.

Metrics (``vlrface.eval.metrics``), pair quality = min(probe, gallery): FNMR at
0 % rejected, and the area under FNMR-vs-rejected from 0 to 20 % and 30 %
(``edc_pauc``) with the threshold fixed on all pairs (EDC, ISO/IEC 29794-1)
or re-derived on the kept pairs (ERC as CR-FIQA plots it), at FMR 1e-2 and
1e-3. Lower is better; ``random`` sits near FNMR₀ × limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from vlrface.checkpoint import load_checkpoint, load_model
from vlrface.config import HeadConfig, config_from_dict
from vlrface.data.degrade import degrade
from vlrface.errors import UserError
from vlrface.eval import metrics
from vlrface.eval.probe_sets import HELD_OUT_OFFSET, ProbeSet, model_embedder, protocol_probe_set, synthetic_probe_set
from vlrface.quality import SCORERS, build_scorer

SIZES = {"synthetic": (16, 8), "att-vlr": (16, 12, 8), "lfw-vlr": (16, 12, 8)}
FMRS = (1e-2, 1e-3)
LIMITS = (0.2, 0.3)
PLOT_FMR = 1e-2
PLOT_REJECT = np.linspace(0.0, 0.5, 26)
RANDOM = "random"


def train_magface(demo: Path) -> Path:
    """The demo's ArcFace fine-tune (its recipe as that checkpoint records it) with the MagFace head.

    MagFace's defaults (l_a 10, u_a 110, margins 0.45–0.8, λ_g 35) and the demo's scale.
    """
    from vlrface.train.trainer import Trainer

    cfg = config_from_dict(load_checkpoint(demo / "arcface" / "model.pt")["config"])
    cfg.out = str(demo / "magface")
    cfg.head = HeadConfig("magface", {"scale": cfg.head.kwargs.get("scale", 64.0)})
    path = Path(cfg.out) / "model.pt"
    if not path.is_file():
        Trainer(cfg, progress=False).fit()
    return path


def qualities(
    model, pre, ckpt: dict, x01: torch.Tensor, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, float]]:
    """Every scorer that applies to this model on ``x01`` → (scores, {skipped scorer: why}, seconds per scorer)."""
    out, skipped, secs = {RANDOM: np.random.default_rng(seed).random(len(x01))}, {}, {}
    x = pre.normalize(x01)
    for name in SCORERS.names():
        try:
            scorer = build_scorer(name, model, ckpt)
        except UserError as e:
            skipped[name] = str(e)
            continue
        t0 = time.perf_counter()
        out[name] = scorer.score(x, batch_size=128)
        secs[name] = time.perf_counter() - t0
    return out, skipped, secs


def figures(scores: np.ndarray, genuine: np.ndarray, probe_q: np.ndarray, gallery_q: np.ndarray) -> dict[str, float]:
    """FNMR₀ and pAUCs with pair quality = min(probe, gallery); ``probe20`` ranks pairs by the probe's quality alone."""
    pair_q = np.minimum(probe_q[:, None], gallery_q[None, :])
    row = {}
    for fmr in FMRS:
        row[f"fnmr0@{fmr:g}"] = float(metrics.erc(scores, genuine, pair_q, fmr, np.array([0.0]))[0])
        for fixed, kind in ((True, "edc"), (False, "erc")):
            for lim in LIMITS:
                row[f"{kind}{int(lim * 100)}@{fmr:g}"] = metrics.edc_pauc(
                    scores, genuine, pair_q, fmr, lim, fixed_threshold=fixed
                )
        row[f"probe20@{fmr:g}"] = metrics.edc_pauc(
            scores, genuine, np.broadcast_to(probe_q[:, None], scores.shape), fmr, 0.2
        )
    return row


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (continuous scores: ties are negligible, so plain ranks)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate_model(model_path: Path, sets: list[ProbeSet]) -> dict:
    model, pre, ckpt = load_model(model_path)
    embed = model_embedder(model, pre)
    result = {"checkpoint": str(model_path), "settings": {}, "curves": {}, "seconds": {}}
    for ps in sets:
        g_emb, _ = embed(ps.gallery)
        g_q, skipped, secs = qualities(model, pre, ckpt, ps.gallery, seed=1)
        result["skipped"] = skipped
        probes = {}
        for size in SIZES[ps.name]:
            x = degrade(ps.probes, size, generator=torch.Generator().manual_seed(size))
            p_emb, _ = embed(x)
            p_q, _, s = qualities(model, pre, ckpt, x, seed=size + 2)
            probes[f"{size}px"] = (p_emb, ps.probe_ids, p_q)
            for k, v in s.items():
                secs[k] += v
        result["seconds"][ps.name] = {k: round(v, 2) for k, v in secs.items()}
        n_images = len(ps.gallery) + len(ps.probes) * len(SIZES[ps.name])
        result["seconds"][ps.name]["images"] = n_images
        probes["mixed"] = tuple(
            np.concatenate([p[i] for p in probes.values()])
            if i != 2
            else {k: np.concatenate([p[2][k] for p in probes.values()]) for k in g_q}
            for i in range(3)
        )
        for setting, (p_emb, p_ids, p_q) in probes.items():
            scores = p_emb @ g_emb.T
            genuine = p_ids[:, None] == ps.gallery_ids[None, :]
            rows = {}
            mate = scores[genuine]  # each probe's genuine score: one gallery image per identity
            assert len(mate) == len(p_emb)
            for name in g_q:
                rows[name] = figures(scores, genuine, p_q[name], g_q[name])
                rows[name]["rho"] = spearman(p_q[name], mate)
                if setting == "mixed":
                    big, small = (
                        probes[f"{max(SIZES[ps.name])}px"][2][name],
                        probes[f"{min(SIZES[ps.name])}px"][2][name],
                    )
                    rows[name]["size_auc"] = metrics.auc(big, small)
                    pair_q = np.minimum(p_q[name][:, None], g_q[name][None, :])
                    result["curves"].setdefault(ps.name, {})[name] = {
                        kind: metrics.erc(scores, genuine, pair_q, PLOT_FMR, PLOT_REJECT, fixed).tolist()
                        for kind, fixed in (("edc", True), ("erc", False))
                    }
            result["settings"].setdefault(ps.name, {})[setting] = {
                "pairs": int(genuine.size),
                "genuine": int(genuine.sum()),
                "scorers": rows,
            }
    return result


def markdown(results: dict) -> str:
    """Tables: per set, the mixed setting in full; then EDC pAUC@20 % at FMR 1e-2 per probe size."""
    lines = []
    sets = next(iter(results.values()))["settings"]
    for set_name in sets:
        for fmr in FMRS:
            lines += [
                f"**{set_name}, mixed probe sizes, FMR {fmr:g}** "
                "(pAUC: lower is better; bold = best scorer of the model)",
                "",
                "| model | scorer | FNMR₀ | EDC pAUC 20 % | EDC pAUC 30 % | ERC pAUC 20 % | ERC pAUC 30 % "
                "| probe-only EDC pAUC 20 % | ρ(q, genuine score) | AUC q(large) > q(small) |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for model, res in results.items():
                rows = res["settings"][set_name]["mixed"]["scorers"]
                keys = [f"{k}@{fmr:g}" for k in ("edc20", "edc30", "erc20", "erc30", "probe20")]
                best = {k: min(r[k] for n, r in rows.items() if n != RANDOM) for k in keys}
                for name, r in rows.items():
                    cells = [f"**{r[k]:.4f}**" if r[k] == best[k] and name != RANDOM else f"{r[k]:.4f}" for k in keys]
                    lines.append(
                        f"| {model} | {name} | {r[f'fnmr0@{fmr:g}']:.3f} | "
                        + " | ".join(cells)
                        + f" | {r['rho']:+.2f} | {r['size_auc']:.2f} |"
                    )
            lines.append("")
        settings = [s for s in sets[set_name] if s != "mixed"]
        lines += [
            f"**{set_name}, EDC pAUC 20 % at FMR 1e-2 per probe size** (FNMR₀ in brackets)",
            "",
            "| model | scorer | " + " | ".join(settings) + " |",
            "|---|---|" + "---|" * len(settings),
        ]
        for model, res in results.items():
            for name in res["settings"][set_name]["mixed"]["scorers"]:
                cells = [res["settings"][set_name][s]["scorers"][name] for s in settings]
                lines.append(
                    f"| {model} | {name} | "
                    + " | ".join(f"{c['edc20@0.01']:.4f} ({c['fnmr0@0.01']:.3f})" for c in cells)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results[model]["curves"]
    fig, axes = plt.subplots(len(curves), 2, figsize=(8, 3.2 * len(curves)), squeeze=False, sharex=True)
    for row, (set_name, by_scorer) in zip(axes, curves.items()):
        for ax, kind in zip(row, ("edc", "erc")):
            for name, c in by_scorer.items():
                ax.plot(PLOT_REJECT, c[kind], label=name, lw=1.5, ls=":" if name == RANDOM else "-")
            title = "fixed threshold (EDC)" if kind == "edc" else "re-derived thr. (ERC)"
            ax.set_title(f"{set_name}, mixed sizes: {title}", fontsize=9)
            ax.set_ylabel(f"FNMR @ FMR {PLOT_FMR:g}")
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of pairs rejected (lowest quality first)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"quality scorers on the {model} model (pair quality = min of the two)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("runs/demo-quick"), help="vlrface demo --quick output folder")
    ap.add_argument("--att", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/att_faces")
    ap.add_argument("--lfw", type=Path, help="LFW root: add the lfw-vlr set (real-face models)")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="score these models (repeatable) instead of the demo's; the synthetic set then needs --demo too",
    )
    ap.add_argument("--magface", action="store_true", help="also train (once) and score a MagFace fine-tune")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.json"))
    ap.add_argument("--plot", type=Path, default=Path("docs/img/quality_erc.png"))
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    t0 = time.perf_counter()
    sets = []
    report = args.demo / "report.json"
    if report.is_file() or not args.model:
        plan = json.loads(report.read_text())["plan"]  # the test set that demo reported on
        sets.append(synthetic_probe_set(0, plan["test_identities"], plan["probes_per_identity"], HELD_OUT_OFFSET))
    if args.att.is_dir():
        sets.append(protocol_probe_set("att-vlr", args.att))
    else:
        print(f"att-vlr skipped: {args.att} absent", file=sys.stderr)
    if args.lfw:
        sets.append(protocol_probe_set("lfw-vlr", args.lfw))
    if args.model:
        pairs = [m.partition("=") for m in args.model]
        if any(not sep or not name for name, sep, _ in pairs):
            ap.error("--model takes NAME=CHECKPOINT")
        models = {name: Path(path) for name, _, path in pairs}
    else:
        models = {"ri": args.demo / "ri" / "model.pt", "arcface": args.demo / "arcface" / "model.pt"}
    if args.magface:
        models["magface"] = train_magface(args.demo)
    results = {}
    for name, path in models.items():
        results[name] = evaluate_model(path, sets)
        print(f"{name}: done at {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"torch threads {torch.get_num_threads()}",
        "wall_s": round(time.perf_counter() - t0, 1),
        "data": {ps.name: ps.source for ps in sets},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    with_prm = [m for m, r in results.items() if "ri" in next(iter(r["curves"].values()))]
    plot(results, "ri" if "ri" in results else (with_prm or list(results))[0], args.plot)
    print(markdown(results))
    print(json.dumps(meta, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
