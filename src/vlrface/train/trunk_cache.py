"""Fine-tune the top of a backbone on the cached output of its frozen trunk.

Why: SFace is a MobileNet whose first blocks run at 112×112 and 56×56; on a
CPU they cost most of a step, and a full fine-tune runs at ~15–30 img/s. With
the stem and the first ``start`` blocks frozen, their output can be computed
once per training image, for a fixed sample of degradations (the HR image and
``variants − 1`` random VLR copies), and the rest of the network trains on it
many times faster. The frozen trunk also keeps much of the pretrained HR skill.
The price is that VLR copies are a fixed sample rather than fresh every step.

The trunk is shared by every model fine-tuned from the same pretrained
backbone, so one :class:`TrunkCache` serves several runs (seeds, ArcFace vs
RI), and :class:`MemoTrunk` lets evaluation compute each test image's trunk
output once for all of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch import nn

from ..checkpoint import atomic_save
from ..config import Config
from ..data.datasets import TrainData
from ..data.degrade import random_jitter, random_vlr
from ..errors import UserError
from ..models.face_model import FaceModel, FaceOutput
from ..preprocess import DEFAULT, Preprocessing
from ..safeload import load_tensors
from .imprint import class_means, imprint
from .trainer import Trainer, step_seed

# class_means normalises its inputs; cached trunk features are already network activations
_FEATURES = Preprocessing(mean=0.0, std=1.0)


def split_backbone(model: FaceModel, start: int) -> tuple[nn.Sequential, nn.Sequential]:
    """``(trunk, top)``: the stem and blocks ``[:start]``, and blocks ``[start:]``."""
    backbone = model.backbone
    blocks, stem = getattr(backbone, "blocks", None), getattr(backbone, "stem", None)
    if blocks is None or stem is None:
        raise UserError(f"{type(backbone).__name__} has no stem/blocks to split; a frozen trunk needs e.g. sface")
    if not 0 < start <= len(blocks):
        raise UserError(f"trunk start {start} out of range: {type(backbone).__name__} has {len(blocks)} blocks")
    return nn.Sequential(stem, *blocks[:start]), nn.Sequential(*blocks[start:])


class TopModel(nn.Module):
    """A :class:`FaceModel` fed with trunk features: the top blocks, then PAM, embedding and PRM."""

    def __init__(self, model: FaceModel, start: int) -> None:
        super().__init__()
        self.model = model
        self.top = split_backbone(model, start)[1]
        self.embedding_size = model.embedding_size

    def forward(self, fmap: torch.Tensor) -> FaceOutput:
        return self.model.forward_fmap(self.top(fmap))

    @torch.no_grad()
    def embed(self, fmap: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self(fmap).embedding.float(), dim=1)


class MemoTrunk(nn.Module):
    """A :class:`FaceModel` whose (frozen) trunk output is remembered per input batch.

    Evaluating several fine-tunes of one pretrained backbone on the same test
    images then runs the expensive trunk once. Batches are keyed by a hash of
    their bytes and of the trunk's weights, so neither a different image set
    nor a different trunk can get a stale answer.
    """

    def __init__(
        self, model: FaceModel, start: int, memo: dict[str, torch.Tensor], dtype: torch.dtype = torch.bfloat16
    ) -> None:
        """``dtype``: what the trunk's output is rounded to, as in the training cache."""
        super().__init__()
        self.trunk = split_backbone(model, start)[0]
        self.top = TopModel(model, start)
        self.memo = memo
        self.dtype = dtype
        self.weights = _digest(*(t.detach().float().cpu() for t in self.trunk.state_dict().values()))

    infer = FaceModel.infer  # what evaluation calls: the same flip and normalisation on this forward

    def forward(self, x: torch.Tensor) -> FaceOutput:
        key = self.weights + str(self.dtype) + _digest(x.detach().float().cpu())
        if key not in self.memo:
            self.memo[key] = self.trunk.eval()(x).to(self.dtype).cpu()
        return self.top(self.memo[key].to(x.device).float())


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrunkCache:
    """Trunk output for every training image × variant (0 = HR, 1… = VLR) and for a fixed UI set.

    ``targets`` is the pretrained model's normalised embedding of each HR image (the cross-resolution
    term's target, ``train.cross_res``); ``singles`` and ``singles_targets`` are the same for one-image
    people (``data.singles``), who have no class and train through that term only.
    """

    start: int
    features: torch.Tensor  # bf16 or fp16 [variants, images, C, h, w], rows as TrainData's rows
    ui: torch.Tensor  # [n_ui, C, h, w], as features
    targets: torch.Tensor | None = None  # fp32 [images, D]
    singles: torch.Tensor | None = None  # [variants, singles, C, h, w], as features
    singles_targets: torch.Tensor | None = None  # fp32 [singles, D]

    @property
    def variants(self) -> int:
        return self.features.shape[0]

    def save(self, path: str | Path) -> None:
        """Atomically: a cache costs a full trunk pass over the training set, worth keeping for reruns."""
        atomic_save(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> TrunkCache:
        if not Path(path).is_file():
            raise UserError(f"no trunk cache at {path}; build one first (benchmarks/lfw_sface.py run --trunk K)")
        state = load_tensors(path, what="trunk cache")
        known = {f.name for f in fields(cls)}
        if not isinstance(state, dict) or not {"start", "features", "ui"} <= set(state) <= known:
            raise UserError(f"{path} is not a trunk cache (delete it and build it again)")
        return cls(**state)

    def subset(self, rows: torch.Tensor) -> TrunkCache:
        """The cache of a training set made of these rows (e.g. with validation people held out)."""
        targets = None if self.targets is None else self.targets[rows]
        return replace(self, features=self.features[:, rows], targets=targets)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: FaceModel,
        data: TrainData,
        cfg: Config,
        start: int,
        variants: int,
        *,
        singles: TrainData | None = None,
        seed: int = 0,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ) -> TrunkCache:
        """Run the trunk of a (pretrained) ``model`` once over ``data`` — as built by ``cfg`` — and the UI set.

        Variant 0 is the HR image, the others random VLR copies (``cfg.data.vlr`` at ``prob`` 1); with
        ``cfg.data.jitter`` on, every copy is first re-framed at random (:func:`~vlrface.data.degrade.random_jitter`).
        The HR targets are ``model``'s own embeddings, so ``model`` should be the pretrained one. ``dtype``:
        bf16 keeps fp32's range, fp16 three more bits of precision (activations here stay far below its 65504).
        """
        if variants < 2:
            raise UserError("a trunk cache needs ≥ 2 variants: the HR image and at least one VLR copy")
        trunk = split_backbone(model, start)[0].to(device).eval()
        top = TopModel(model, start).to(device).eval()
        pre = getattr(model.backbone, "preprocessing", DEFAULT)
        features = _trunk_features(trunk, pre, data, cfg, variants, seed, batch_size, device, dtype)
        one_image = None  # the singles get their own degradation streams (seed + 7), not the first rows' again
        if singles is not None:
            one_image = _trunk_features(trunk, pre, singles, cfg, variants, seed + 7, batch_size, device, dtype)
        ui_images = data.ui_images(cfg.data.ui.size, seed=seed + 1)
        ui = torch.cat([trunk(pre.normalize(c.to(device))).to(dtype).cpu() for c in ui_images.split(batch_size)])
        return cls(
            start,
            features,
            ui,
            targets=_embed(top, features[0], batch_size, device),
            singles=one_image,
            singles_targets=None if one_image is None else _embed(top, one_image[0], batch_size, device),
        )


def _trunk_features(
    trunk: nn.Module,
    pre: Preprocessing,
    data: TrainData,
    cfg: Config,
    variants: int,
    seed: int,
    batch_size: int,
    device: str | torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``[variants, images, C, h, w]``: the trunk's output for every row of ``data``, HR and VLR copies."""
    always = replace(cfg.data.vlr, prob=1.0)
    n, steps = data.num_images, math.ceil(data.num_images / batch_size)
    features = None
    stream = data.batches(batch_size, start_step=0)  # epoch 0 visits every row once
    for step in track(range(steps), description=f"trunk cache ({variants} variants)", transient=True):
        images, _ = next(stream)
        rows = torch.from_numpy(data.positions(batch_size, step))  # the last batch may wrap: rows come again
        if len(rows) != len(images):
            raise UserError("some training images are unreadable; a trunk cache needs every row (fix the data)")
        # a wrapped batch may hold a row twice (end of epoch 0, start of epoch 1): keep its first copy, since
        # writing both in one index_put has no defined winner and made the cache differ from run to run
        first = torch.from_numpy(np.sort(np.unique(rows.numpy(), return_index=True)[1]))
        for v in range(variants):
            # framing jitter (data.jitter; off by default) on every copy, HR included, from its own stream
            x = random_jitter(images, cfg.data.jitter, torch.Generator().manual_seed(step_seed(seed + 1, step) + v))
            if v > 0:
                x = random_vlr(x, always, torch.Generator().manual_seed(step_seed(seed, step) + v))
            f = trunk(pre.normalize(x.to(device))).to(dtype).cpu()
            if features is None:
                features = torch.empty(variants, n, *f.shape[1:], dtype=dtype)
            features[v, rows[first]] = f[first]
    assert features is not None  # TrainData has at least one image, so at least one step ran
    return features


def _embed(top: TopModel, features: torch.Tensor, batch_size: int, device: str | torch.device) -> torch.Tensor:
    """fp32 normalised embeddings of cached trunk output (eval mode: no dropout)."""
    return torch.cat([top.embed(f.to(device).float()).cpu() for f in features.split(batch_size)])


class CachedTrunkTrainer(Trainer):
    """:class:`Trainer` on a :class:`TrunkCache`: the top trains, the trunk stays as loaded.

    Per step each sample is the HR variant, or with probability
    ``data.vlr.prob`` one of the VLR variants, drawn from the step's generator
    (so runs stay exactly resumable). Imprinting uses the HR variant; the UI
    centre is refreshed from the cached UI set. With ``train.cross_res`` each
    sample's embedding is also pulled towards the cached HR target, and
    ``train.singles_per_batch`` one-image people (``data.singles``) join every
    step through that term alone.
    """

    cross_resolution = True

    def __init__(self, cfg: Config, cache: TrunkCache, **kwargs) -> None:
        if cfg.train.cross_res and cache.targets is None:
            raise UserError("train.cross_res needs a trunk cache with HR targets; this one predates them (rebuild it)")
        if cfg.data.singles and not (cache.singles is not None and cfg.train.cross_res):
            raise UserError(
                "data.singles trains through the cross-resolution term only: it needs train.cross_res > 0 "
                "and a trunk cache built with the singles (benchmarks/lfw_sface.py run --singles)"
            )
        self.cache = cache  # needed by imprint_head, which the parent constructor calls
        self.step_targets: torch.Tensor | None = None  # this step's HR targets, set by batch_inputs
        self.step_singles: tuple[torch.Tensor, torch.Tensor] | None = None  # (trunk output, targets)
        super().__init__(cfg, **kwargs)
        self.top = TopModel(self.model, cache.start)
        self.forward = self.top
        for p in split_backbone(self.model, cache.start)[0].parameters():
            p.requires_grad_(False)

    def _top(self) -> TopModel:
        return getattr(self, "top", None) or TopModel(self.model, self.cache.start)

    def imprint_head(self) -> int:
        if self.data.num_images != self.cache.features.shape[1]:
            raise UserError("the trunk cache was built from different training data")
        hr, labels = self.cache.features[0], torch.from_numpy(self.data.labels)
        chunks = ((hr[i : i + 256].float(), labels[i : i + 256]) for i in range(0, len(hr), 256))
        means, seen = class_means(self._top(), chunks, self.data.num_classes, _FEATURES, self.device)
        return imprint(self.objective.head.weight.data, means, seen)

    def refresh_ui(self) -> None:
        self.objective.refresh(self._top(), self.cache.ui.to(self.device).float())

    def batches(self, batch_size: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = start_step
        while True:
            rows = torch.from_numpy(self.data.positions(batch_size, step))
            yield rows, torch.from_numpy(self.data.labels[rows.numpy()])
            step += 1

    def batch_inputs(self, rows: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        vlr, variant = self.draw_variants(rows.shape[0], gen)
        cache, k = self.cache, self.cfg.train.singles_per_batch
        if self.cfg.train.cross_res:  # drawn after the rows' own draws: runs without it keep their streams
            assert cache.targets is not None  # checked in __init__
            self.step_targets = cache.targets[rows].to(self.device)
            if self.cfg.data.singles and k and cache.singles is not None and cache.singles_targets is not None:
                srows = torch.randint(cache.singles.shape[1], (k,), generator=gen)
                svariant = self.draw_variants(k, gen)[1]
                self.step_singles = (
                    cache.singles[svariant, srows].to(self.device).float(),
                    cache.singles_targets[srows].to(self.device),
                )
        return cache.features[variant, rows].to(self.device).float(), vlr

    def draw_variants(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: VLR or not (``data.vlr.prob``), and its cached variant (0 = HR, else a random VLR copy)."""
        vlr = torch.rand(n, generator=gen) < self.cfg.data.vlr.prob
        return vlr, torch.where(vlr, torch.randint(1, self.cache.variants, (n,), generator=gen), 0)

    def aux_loss(self, out: FaceOutput) -> tuple[torch.Tensor | None, dict[str, float]]:
        """``cross_res · mean(1 − cos(embedding, HR target))`` over the batch and this step's singles."""
        if not self.cfg.train.cross_res or self.step_targets is None:
            return None, {}
        pairs = [(out.embedding, self.step_targets)]
        if self.step_singles is not None:
            pairs.append((self.top(self.step_singles[0]).embedding, self.step_singles[1]))
        gaps = torch.cat([1 - nn.functional.cosine_similarity(e.float(), t, dim=1) for e, t in pairs])
        term = gaps.mean()
        return self.cfg.train.cross_res * term, {"cross_res": float(term.detach())}
