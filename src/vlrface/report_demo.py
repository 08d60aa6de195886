"""Evaluation and report of ``vlrface demo`` (see :mod:`vlrface.demo`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.degrade import degrade
from .data.synth import SynthFaces
from .errors import UserError
from .eval import metrics
from .eval.embed import load_faces, raw_pixels
from .eval.protocols import PROTOCOLS, GalleryProbeProtocol
from .preprocess import Preprocessing
from .train.checkpoint import load_model

SIZES: tuple[int | None, ...] = (None, 16, 12, 8)  # None = HR probes
ERC_FMR = 1e-2
ERC_REJECT = 0.3
# An embedder maps float images [N,3,112,112] in [0,1] to (L2-normalised embeddings, {scorer: quality}).
Embedder = Callable[[torch.Tensor], tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass
class ProbeSet:
    """An HR gallery and HR probes; probes are degraded to each size at evaluation."""

    name: str
    source: str  # which data the figures come from, said in every report
    gallery: torch.Tensor
    gallery_ids: np.ndarray
    probes: torch.Tensor
    probe_ids: np.ndarray


def _float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def synthetic_probe_set(seed: int, identities: int, probes_per_identity: int, offset: int) -> ProbeSet:
    faces = SynthFaces(seed)
    ids = np.arange(offset, offset + identities)
    gallery = faces.batch(ids.tolist(), [0] * identities)
    pids = np.repeat(ids, probes_per_identity)
    pidx = np.tile(np.arange(1, probes_per_identity + 1), identities)
    probes = faces.batch(pids.tolist(), pidx.tolist())
    return ProbeSet("synthetic", f"synthetic faces, {identities} held-out identities (seed {seed})",
                    _float(gallery), ids, _float(probes), pids)


def protocol_probe_set(name: str, root: Path) -> ProbeSet:
    """A gallery/probe protocol (``att-vlr``, ``lfw-vlr`` …) loaded once as tensors, files and crops as it defines them."""
    proto = PROTOCOLS.build(name).load(root)
    if not isinstance(proto, GalleryProbeProtocol):
        raise UserError(f"protocol {name} has no gallery and probes; use a gallery/probe one such as att-vlr or lfw-vlr")
    gallery, _ = load_faces(proto.gallery, proto.crop, None)
    probes, _ = load_faces(proto.probes, proto.crop, None)
    return ProbeSet(name, f"{proto.description} ({root})", gallery, np.array(proto.gallery_ids),
                    probes, np.array(proto.probe_ids))


def model_embedder(model: torch.nn.Module, pre: Preprocessing, batch: int = 256) -> Embedder:
    @torch.no_grad()
    def embed(images: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        embs, norms, ri = [], [], []
        for chunk in images.split(batch):
            out = model(pre.normalize(chunk))
            e = out.embedding.float()
            embs.append(torch.nn.functional.normalize(e, dim=1))
            norms.append(e.norm(dim=1))
            if out.quality is not None:
                ri.append(out.quality.float())
        quality = {"norm": torch.cat(norms).numpy()}
        if ri:
            quality["ri"] = torch.cat(ri).numpy()
        return torch.cat(embs).numpy(), quality

    return embed


def raw_pixel_embedder(images: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Raw-pixel matching (:func:`vlrface.eval.embed.raw_pixels`): the floor every model must clear."""
    return raw_pixels(images).numpy(), {}


def evaluate(embed: Embedder, ps: ProbeSet, sizes=SIZES) -> dict[str, Any]:
    """Per probe size: rank-1/5, TAR@FAR 1e-2/1e-3, EER, and each quality score's ERC."""
    g_emb, g_q = embed(ps.gallery)
    out: dict[str, Any] = {}
    for size in sizes:
        gen = torch.Generator().manual_seed(size or 0)
        probes = ps.probes if size is None else degrade(ps.probes, size, generator=gen)
        p_emb, p_q = embed(probes)
        ident = metrics.identification_metrics(p_emb, ps.probe_ids, g_emb, ps.gallery_ids, ranks=(1, 5))
        scores = p_emb @ g_emb.T
        genuine_mask = ps.probe_ids[:, None] == ps.gallery_ids[None, :]
        tar = metrics.tar_at_far(scores[genuine_mask], scores[~genuine_mask], fars=(1e-2, 1e-3))
        entry = {
            "rank1": ident["cmc"][1],
            "rank5": ident["cmc"][5],
            "tar@far=1e-2": tar[1e-2],
            "tar@far=1e-3": tar[1e-3],
            "eer": metrics.eer(scores[genuine_mask], scores[~genuine_mask]),
            "num_probes": int(len(ps.probe_ids)),
        }
        erc_curves = {}
        for name, q in p_q.items():
            pair_q = np.minimum(q[:, None], g_q[name][None, :])
            ratios = np.linspace(0, 0.9, 19)
            curve = metrics.erc(scores.ravel(), genuine_mask.ravel(), pair_q.ravel(), fmr=ERC_FMR, reject_ratios=ratios)
            erc_curves[name] = {"reject": ratios.tolist(), "fnmr": curve.tolist()}
            entry[f"fnmr@reject={ERC_REJECT}|{name}"] = float(np.interp(ERC_REJECT, ratios, curve))
        if erc_curves:
            entry["erc"] = erc_curves
        out["HR" if size is None else f"{size}px"] = entry
    return out


def evaluate_and_report(out: Path, paths: dict[str, Path], plan, att: Path | None,
                        seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Evaluate the checkpoints on every probe set and write the report; ``seconds`` gains the evaluation's time."""
    from .demo import TEST_IDENTITY_OFFSET

    t0, c0 = time.perf_counter(), time.process_time()
    sets = [synthetic_probe_set(0, plan.test_identities, plan.probes_per_identity, TEST_IDENTITY_OFFSET)]
    if att is not None:
        sets.append(protocol_probe_set("att-vlr", att))
    embedders: dict[str, Embedder] = {"raw-pixels": raw_pixel_embedder}
    for name in ("arcface", "ri"):
        model, pre, _ = load_model(paths[name])
        embedders[name] = model_embedder(model, pre)
    results = {ps.name: {m: evaluate(e, ps) for m, e in embedders.items()} for ps in sets}
    seconds = {**(seconds or {}), "evaluate": round(time.perf_counter() - t0, 1),
               "cpu:evaluate": round(time.process_time() - c0, 1)}
    report = {
        "data": {ps.name: ps.source for ps in sets},
        "checkpoints": {k: str(v) for k, v in paths.items()},
        "plan": plan.__dict__,
        "seconds": seconds,  # wall and CPU time per stage (a resumed stage counts only what it ran)
        "results": results,
        "verdict": verdict(results),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    plots(out, results)
    return report


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
                    lines.append(f"{set_name} {size}: {m} rank-1 {by_model[m][size]['rank1']:.3f} is below raw pixels {raw['rank1']:.3f}")
            ri_q, norm_q = ri.get(f"fnmr@reject={ERC_REJECT}|ri"), ri.get(f"fnmr@reject={ERC_REJECT}|norm")
            if ri_q is not None and norm_q is not None:
                word = "lower (better)" if ri_q < norm_q else "NOT lower"
                lines.append(f"{set_name} {size} quality: FNMR@FMR={ERC_FMR:g} after rejecting {ERC_REJECT:.0%}: RI {ri_q:.3f} is {word} than feature norm {norm_q:.3f}")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# vlrface demo report", ""]
    for name, src in report["data"].items():
        lines.append(f"- **{name}**: {src}")
    lines += ["", "Models: `raw-pixels` (grey 32×32 cosine, the floor), `arcface` (ArcFace fine-tune), "
              "`ri` (full RI fine-tune: PAM + PRM + index diversion); same pre-training, seed, steps and data.", ""]
    for set_name, by_model in report["results"].items():
        lines += [f"## {set_name}", "", "| model | probes | rank-1 | rank-5 | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER |",
                  "|---|---|---|---|---|---|---|"]
        for model, by_size in by_model.items():
            for size, r in by_size.items():
                lines.append(f"| {model} | {size} | {r['rank1']:.3f} | {r['rank5']:.3f} | {r['tar@far=1e-2']:.3f} "
                             f"| {r['tar@far=1e-3']:.3f} | {r['eer']:.3f} |")
        lines.append("")
    lines += ["## Verdict", ""] + [f"- {v}" for v in report["verdict"]] + [""]
    lines += ["Plots: `cmc_rank1.png` (rank-1 by probe size), `erc.png` (quality ERC).", ""]
    return "\n".join(lines)


def plots(out: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (set_name, by_model) in zip(axes[0], results.items()):
        for model, by_size in by_model.items():
            sizes = list(by_size)
            ax.plot(sizes, [by_size[s]["rank1"] for s in sizes], marker="o", label=model)
        ax.set(title=f"{set_name}: rank-1 by probe size", ylabel="rank-1", ylim=(0, 1.02))
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cmc_rank1.png", dpi=110)
    plt.close(fig)
    curves = [(s, size, r["erc"]) for s, bm in results.items() for size, r in bm["ri"].items() if size != "HR" and "erc" in r]
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
