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

    def __init__(self, model: FaceModel, start: int, memo: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.trunk = split_backbone(model, start)[0]
        self.top = TopModel(model, start)
        self.memo = memo
        self.weights = _digest(*(t.detach().float().cpu() for t in self.trunk.state_dict().values()))

    infer = FaceModel.infer  # what evaluation calls: the same flip and normalisation on this forward

    def forward(self, x: torch.Tensor) -> FaceOutput:
        key = self.weights + _digest(x.detach().float().cpu())
        if key not in self.memo:
            self.memo[key] = self.trunk.eval()(x).to(torch.bfloat16).cpu()
        return self.top(self.memo[key].to(x.device).float())


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrunkCache:
    """Trunk output for every training image × variant (0 = HR, 1… = VLR) and for a fixed UI set."""

    start: int
    features: torch.Tensor  # bf16 [variants, images, C, h, w], rows as TrainData's rows
    ui: torch.Tensor  # bf16 [n_ui, C, h, w]

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
        if not isinstance(state, dict) or set(state) != {f.name for f in fields(cls)}:
            raise UserError(f"{path} is not a trunk cache (delete it and build it again)")
        return cls(**state)

    def subset(self, rows: torch.Tensor) -> TrunkCache:
        """The cache of a training set made of these rows (e.g. with validation people held out)."""
        return TrunkCache(self.start, self.features[:, rows], self.ui)

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
        seed: int = 0,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> TrunkCache:
        """Run the trunk of a (pretrained) ``model`` once over ``data`` — as built by ``cfg`` — and the UI set.

        Variant 0 is the HR image, the others random VLR copies (``cfg.data.vlr`` at ``prob`` 1); with
        ``cfg.data.jitter`` on, every copy is first re-framed at random (:func:`~vlrface.data.degrade.random_jitter`).
        """
        if variants < 2:
            raise UserError("a trunk cache needs ≥ 2 variants: the HR image and at least one VLR copy")
        trunk = split_backbone(model, start)[0].to(device).eval()
        pre = getattr(model.backbone, "preprocessing", DEFAULT)
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
                f = trunk(pre.normalize(x.to(device))).to(torch.bfloat16).cpu()
                if features is None:
                    features = torch.empty(variants, n, *f.shape[1:], dtype=torch.bfloat16)
                features[v, rows[first]] = f[first]
        ui_images = data.ui_images(cfg.data.ui.size, seed=seed + 1)
        ui = torch.cat(
            [trunk(pre.normalize(c.to(device))).to(torch.bfloat16).cpu() for c in ui_images.split(batch_size)]
        )
        assert features is not None  # TrainData has at least one image, so at least one step ran
        return cls(start, features, ui)


class CachedTrunkTrainer(Trainer):
    """:class:`Trainer` on a :class:`TrunkCache`: the top trains, the trunk stays as loaded.

    Per step each sample is the HR variant, or with probability
    ``data.vlr.prob`` one of the VLR variants, drawn from the step's generator
    (so runs stay exactly resumable). Imprinting uses the HR variant; the UI
    centre is refreshed from the cached UI set.
    """

    def __init__(self, cfg: Config, cache: TrunkCache, **kwargs) -> None:
        self.cache = cache  # needed by imprint_head, which the parent constructor calls
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
        b = rows.shape[0]
        vlr = torch.rand(b, generator=gen) < self.cfg.data.vlr.prob
        variant = torch.where(vlr, torch.randint(1, self.cache.variants, (b,), generator=gen), 0)
        return self.cache.features[variant, rows].to(self.device).float(), vlr
