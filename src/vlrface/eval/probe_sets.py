"""Resolution sweeps: an HR gallery against probes degraded to each size.

One function, :func:`evaluate`, gives the figures the demo's report, the
ablation and the quality benchmark share: rank-1/5, TAR@FAR, EER and each
quality score's ERC per probe size, for any :data:`Embedder` (a model via
:func:`model_embedder`, or raw pixels, the floor every model must clear).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.degrade import degrade
from ..data.synth import SynthFaces
from ..errors import UserError
from ..preprocess import Preprocessing
from . import metrics
from .embed import load_faces, raw_pixels
from .protocols import PROTOCOLS, GalleryProbeProtocol

HELD_OUT_OFFSET = 1_000_000
"""First synthetic identity of held-out sets: never overlaps the training identities."""
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
    """Synthetic identities ``offset …`` (see :data:`HELD_OUT_OFFSET`): image 0 as gallery, images 1…n as probes."""
    faces = SynthFaces(seed)
    ids = np.arange(offset, offset + identities)
    gallery = faces.batch(ids.tolist(), [0] * identities)
    pids = np.repeat(ids, probes_per_identity)
    pidx = np.tile(np.arange(1, probes_per_identity + 1), identities)
    probes = faces.batch(pids.tolist(), pidx.tolist())
    return ProbeSet(
        "synthetic",
        f"synthetic faces, {identities} held-out identities (seed {seed})",
        _float(gallery),
        ids,
        _float(probes),
        pids,
    )


def protocol_probe_set(name: str, root: Path) -> ProbeSet:
    """A gallery/probe protocol (``att-vlr``, ``lfw-vlr`` …) loaded once as tensors.

    Files and crops are as the protocol defines them.
    """
    proto = PROTOCOLS.build(name).load(root)
    if not isinstance(proto, GalleryProbeProtocol):
        raise UserError(
            f"protocol {name} has no gallery and probes; use a gallery/probe one such as att-vlr or lfw-vlr"
        )
    gallery, _ = load_faces(proto.gallery, proto.crop, None)
    probes, _ = load_faces(proto.probes, proto.crop, None)
    return ProbeSet(
        name, f"{proto.description} ({root})", gallery, np.array(proto.gallery_ids), probes, np.array(proto.probe_ids)
    )


def model_embedder(model: torch.nn.Module, pre: Preprocessing, batch: int = 256) -> Embedder:
    """An :data:`Embedder` for a :class:`~vlrface.models.FaceModel`: its embeddings, with the feature
    norm (``norm``) and, when the model has a PRM, its prediction (``ri``) as quality scores."""

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
            "num_probes": len(ps.probe_ids),
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
