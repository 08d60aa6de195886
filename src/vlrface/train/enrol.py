"""Few-shot enrolment of new identities into a trained model (Park, Park & Teoh,
"Open-Set Face Identification on Few-Shot Gallery by Fine-Tuning", ICPR 2022).

Two steps, both on the new identities' few shots only:

1. **Weight imprinting** (:mod:`vlrface.train.imprint`): each new identity
   gets a class row in the head equal to the normalised mean embedding of its
   shots. Existing rows (the training identities, earlier enrolments) stay.
2. **BN-only fine-tuning**: a few steps of the checkpoint's margin loss
   (its ``head`` config, ArcFace when it has none) over all head rows, with
   the new rows frozen and only the BatchNorm affine parameters (γ, β)
   trainable. The shots are flipped and degraded with the training VLR mix
   (:func:`vlrface.data.degrade.random_vlr`), so the update teaches the
   network to map low-resolution views of the new people onto their
   high-resolution prototypes.

Why affine only, with the running statistics frozen (BN in eval mode): a
batch of a few shots of a few dozen people gives statistics far noisier
than the running means and variances estimated on the training set, and
overwriting them would shift *every* embedding, including those of people
already in galleries built with the old model. γ and β are ~1 % of the
weights, so a few steps cannot overfit far, and the model stays
deterministic at inference.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_save, load_model
from ..config import VLRConfig
from ..data.degrade import random_vlr
from ..data.readers import SkipReport, read_image_folder
from ..errors import UserError
from ..eval.embed import load_faces
from ..models import HEADS
from ..models.face_model import FaceModel
from ..preprocess import Preprocessing
from .imprint import class_means, imprint

DEFAULT_HEAD: dict[str, Any] = {"name": "arcface", "kwargs": {}}


@dataclass
class Shots:
    """Face crops of the identities to enrol: ``images [N,3,112,112]`` in [0, 1], ``labels [N]`` into ``names``."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]


@dataclass
class EnrolResult:
    model: FaceModel  # with the fine-tuned BN affine parameters
    weight: torch.Tensor  # [C, D] all head rows: the old ones, then one per enrolled name
    names: list[str]  # the enrolled identities, rows ``first … first + len(names) − 1``
    first: int
    losses: list[float] = field(default_factory=list)  # per fine-tuning step


def read_shots(
    folder: str | Path, crop: str = "default", max_shots: int | None = None, skips: SkipReport | None = None
) -> Shots:
    """``folder/ID/*.jpg`` → :class:`Shots` (the first ``max_shots`` per identity by file name).

    Unreadable files go to ``skips``; an identity left without a readable shot is a :class:`UserError`.
    """
    images = read_image_folder(folder)
    paths, labels = [], []
    for y in range(len(images.names)):
        mine = [p for p, label in zip(images.paths, images.labels) if label == y][:max_shots]
        paths += mine
        labels += [y] * len(mine)
    x, ok = load_faces(paths, crop, None, skips)
    labels_t = torch.tensor(labels)[torch.from_numpy(ok)]
    empty = sorted(set(images.names) - {images.names[y] for y in labels_t.tolist()})
    if empty:
        raise UserError(f"{folder}: no readable shot for {', '.join(empty[:5])}" + (" …" if len(empty) > 5 else ""))
    return Shots(x[torch.from_numpy(ok)], labels_t, images.names)


def bn_affine_parameters(model: nn.Module) -> list[nn.Parameter]:
    """γ and β of every BatchNorm layer (those with ``affine=True``)."""
    return [
        p
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
        for p in (m.weight, m.bias)
    ]


def _batches(shots: Shots, offset: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, len(shots.labels), batch_size):
        yield shots.images[i : i + batch_size], shots.labels[i : i + batch_size] + offset


def enrol_shots(
    model: FaceModel,
    preprocessing: Preprocessing,
    shots: Shots,
    *,
    base_weight: torch.Tensor | None = None,
    head: dict[str, Any] | None = None,
    steps: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    vlr: VLRConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> EnrolResult:
    """Imprint one head row per identity in ``shots`` after ``base_weight``'s rows, then BN-only fine-tune.

    The fine-tune runs ``steps`` steps; ``steps=0`` is imprinting only. The model is changed in place.
    """
    head = head or DEFAULT_HEAD
    first = 0 if base_weight is None else len(base_weight)
    n_classes = first + len(shots.names)
    margin_head = HEADS.build(
        head["name"], embedding_size=model.embedding_size, num_classes=n_classes, **head.get("kwargs", {})
    ).to(device)
    if base_weight is not None:
        if base_weight.shape[1] != model.embedding_size:
            raise UserError(
                f"the checkpoint's head rows are {base_weight.shape[1]}-d, its model {model.embedding_size}-d"
            )
        margin_head.weight.data[:first] = base_weight.to(device)
    model.to(device)
    means, seen = class_means(model, _batches(shots, first, batch_size), n_classes, preprocessing, device)
    imprint(margin_head.weight.data, means, seen)
    losses = (
        _fine_tune_bn(
            model, preprocessing, margin_head, shots, first, steps, lr, batch_size, vlr or VLRConfig(), seed, device
        )
        if steps
        else []
    )
    return EnrolResult(model.eval(), margin_head.weight.detach().cpu(), list(shots.names), first, losses)


def _fine_tune_bn(
    model: FaceModel,
    preprocessing: Preprocessing,
    head: nn.Module,
    shots: Shots,
    first: int,
    steps: int,
    lr: float,
    batch_size: int,
    vlr: VLRConfig,
    seed: int,
    device: str | torch.device,
) -> list[float]:
    params = bn_affine_parameters(model)
    if not params:
        raise UserError("the model has no BatchNorm layers to fine-tune; use --steps 0 (imprinting only)")
    trainable = {id(p) for p in params}
    saved = {p: p.requires_grad for p in [*model.parameters(), *head.parameters()]}
    for p in saved:
        p.requires_grad_(id(p) in trainable)
    opt = torch.optim.Adam(params, lr=lr)  # step size ≈ lr whatever the gradient scale (s = 64 heads)
    gen = torch.Generator().manual_seed(seed)
    model.eval()  # BN normalises with (and keeps) its running statistics; dropout off
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randperm(len(shots.labels), generator=gen)[:batch_size]
            x = shots.images[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            x = random_vlr(x, vlr, gen).to(device)
            loss = head(model(preprocessing.normalize(x)).embedding, (shots.labels[idx] + first).to(device)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    return losses


def enrol(
    ckpt: str | Path,
    shots_dir: str | Path,
    out: str | Path,
    *,
    crop: str = "default",
    max_shots: int | None = None,
    steps: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    skips: SkipReport | None = None,
) -> EnrolResult:
    """Enrol ``shots_dir/ID/*.jpg`` into the checkpoint; write the new checkpoint to ``out`` atomically.

    The new checkpoint holds the fine-tuned model, all head rows in
    ``objective["head.weight"]``, and ``enrolled = {"first", "names"}``
    naming the enrolled rows (accumulated over repeated enrolments).
    """
    if Path(out).resolve() == Path(ckpt).resolve():
        raise UserError("--out must differ from --ckpt: the original checkpoint is kept")
    model, pre, ck = load_model(ckpt, device)
    objective = dict(ck.get("objective") or {})
    base = objective.get("head.weight")
    before = ck.get("enrolled") or {"first": 0 if base is None else len(base), "names": []}
    shots = read_shots(shots_dir, crop, max_shots, skips)
    again = sorted(set(shots.names) & set(before["names"]))
    if again:
        raise UserError(f"already enrolled in {ckpt}: {', '.join(again[:5])}")
    head = ck["config"].get("head") or DEFAULT_HEAD
    vlr = ck["config"].get("data", {}).get("vlr")
    result = enrol_shots(
        model,
        pre,
        shots,
        base_weight=base,
        head=head,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        vlr=VLRConfig(**vlr) if vlr else None,
        seed=seed,
        device=device,
    )
    objective["head.weight"] = result.weight
    new = {k: v for k, v in ck.items() if k not in ("optimizer", "scaler")}  # not a resumable training state any more
    new |= {
        "model": {k: v.cpu() for k, v in result.model.state_dict().items()},
        "objective": objective,
        "num_classes": len(result.weight),
        "config": {**ck["config"], "head": head},
        "enrolled": {"first": before["first"], "names": before["names"] + result.names},
    }
    atomic_save(new, out)
    return result


def enrolled_scores(embeddings: np.ndarray, result: EnrolResult) -> np.ndarray:
    """Cosine of L2-normalised embeddings to the enrolled rows ``[N, len(result.names)]`` (the imprinted classifier)."""
    w = result.weight[result.first : result.first + len(result.names)].numpy()
    return np.asarray(embeddings, np.float32) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
