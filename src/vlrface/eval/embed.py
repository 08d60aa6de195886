"""Turning image files into L2-normalised embeddings for evaluation.

Protocols describe what to embed as an :class:`ImageSet` (files, face crop,
probe size) and call an *embed function* ``ImageSet → Embedded``. Two exist:
:class:`ModelEmbedder` (a :class:`~vlrface.models.FaceModel`, optional flip
augmentation, PRM quality, an on-disk cache) and :class:`RawPixelEmbedder`,
the baseline every model must beat at 8–12 px. Both see exactly the same
pixels: read → documented face crop → (degrade to ``size`` px and back).

An unreadable file gets a zero embedding (it matches nothing, so it counts
as a failure) and quality −inf, and is listed in the skip summary.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from ..data.degrade import degrade
from ..data.readers import SkipReport, read_image, to_face
from ..preprocess import Preprocessing

RAW_PIXEL_SIZE = 32


@dataclass(frozen=True)
class ImageSet:
    """Files to embed, the face crop to apply and the probe size (None = as read)."""

    paths: tuple[Path, ...]
    crop: str = "default"
    size: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def label(self) -> str:
        return f"{len(self)} images" + (f" @{self.size}px" if self.size else "")


@dataclass
class Embedded:
    emb: np.ndarray  # [N, D] float32, L2-normalised (zero rows for unreadable files)
    quality: np.ndarray | None  # [N] PRM quality (higher = better), or None


EmbedFn = Callable[[ImageSet], Embedded]


def load_faces(
    paths: Sequence[Path], crop: str, size: int | None, skips: SkipReport | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """``(faces float[B,3,112,112] in [0,1], readable mask [B])``, degraded to ``size`` px when given."""
    ok = np.ones(len(paths), bool)
    faces = []
    for i, p in enumerate(paths):
        img = read_image(p, skips)
        if img is None:
            ok[i] = False
            faces.append(np.zeros((112, 112, 3), np.uint8))
        else:
            faces.append(to_face(img, crop))
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
    return (degrade(x, size) if size else x), ok


def _batches(images: ImageSet, batch_size: int, progress: bool, what: str):
    starts = range(0, len(images), batch_size)
    return track(starts, description=f"{what} {images.label()}", transient=True, disable=not progress)


def raw_pixels(x01: torch.Tensor) -> torch.Tensor:
    """Float images ``[B,3,H,W]`` → grey 32×32 pixels, mean-removed, L2-normalised ``[B,1024]``."""
    v = F.adaptive_avg_pool2d(x01.mean(1, keepdim=True), RAW_PIXEL_SIZE).flatten(1)
    return F.normalize(v - v.mean(1, keepdim=True), dim=1)


class RawPixelEmbedder:
    """Grey pixels at 32×32, mean-removed, L2-normalised: cosine = pixel correlation."""

    name = "raw-pixel"

    def __init__(self, batch_size: int = 256, progress: bool = False, skips: SkipReport | None = None) -> None:
        self.batch_size, self.progress, self.skips = batch_size, progress, skips

    def __call__(self, images: ImageSet) -> Embedded:
        out = np.zeros((len(images), RAW_PIXEL_SIZE * RAW_PIXEL_SIZE), np.float32)
        for i in _batches(images, self.batch_size, self.progress, "raw pixels"):
            x, ok = load_faces(images.paths[i : i + self.batch_size], images.crop, images.size, self.skips)
            v = raw_pixels(x).numpy()
            out[i : i + len(v)] = v * ok[:, None]
        return Embedded(out, None)


def file_key(path: Path) -> str:
    """Identity of a file's content for caching: resolved path, mtime and size."""
    st = path.stat() if path.exists() else None
    return f"{path.resolve()}|{st.st_mtime_ns if st else 0}|{st.st_size if st else -1}"


class EmbeddingCache:
    """One ``.npz`` per (model, crop, size, flip) holding per-file rows, so re-runs skip extraction."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _file(self, namespace: str) -> Path:
        return self.root / f"{hashlib.sha1(namespace.encode()).hexdigest()[:20]}.npz"

    def load(self, namespace: str) -> dict[str, tuple[np.ndarray, float]]:
        f = self._file(namespace)
        if not f.is_file():
            return {}
        try:  # allow_pickle=False: a cache file is arrays only, never code
            with np.load(f, allow_pickle=False) as z:
                return {k: (e, q) for k, e, q in zip(z["keys"].tolist(), z["emb"], z["quality"])}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged or foreign: a miss, rewritten
            return {}

    def save(self, namespace: str, rows: dict[str, tuple[np.ndarray, float]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        keys = list(rows)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=self.root)
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                keys=np.array(keys),
                emb=np.stack([rows[k][0] for k in keys]),
                quality=np.array([rows[k][1] for k in keys], np.float32),
            )
        os.replace(tmp, self._file(namespace))


class InferenceModel(Protocol):
    """What :class:`ModelEmbedder` needs: a :class:`~vlrface.models.FaceModel`, or a module with its ``infer``."""

    def eval(self) -> Self: ...

    def infer(self, x: torch.Tensor, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ModelEmbedder:
    """Batched ``FaceModel`` embeddings (+ PRM quality) with optional flip and cache.

    ``flip`` is insightface's test-time augmentation (see
    :meth:`~vlrface.models.FaceModel.infer`). ``model_key`` names the weights in cache keys
    (see :func:`file_key` for a checkpoint file).
    """

    name = "model"

    def __init__(
        self,
        model: InferenceModel,
        preprocessing: Preprocessing,
        *,
        flip: bool = False,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        cache: EmbeddingCache | None = None,
        model_key: str = "",
        progress: bool = True,
        skips: SkipReport | None = None,
    ) -> None:
        self.model, self.pre, self.flip = model.eval(), preprocessing, flip
        self.batch_size, self.device, self.cache = batch_size, torch.device(device), cache
        self.model_key, self.progress, self.skips = model_key, progress, skips

    @torch.inference_mode()
    def _forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb, q = self.model.infer(self.pre.normalize(x01.to(self.device)), self.flip)
        return emb.cpu(), None if q is None else q.cpu()

    def _extract(self, images: ImageSet) -> Embedded:
        emb, qual = None, None
        for i in _batches(images, self.batch_size, self.progress, "embedding"):
            x, ok = load_faces(images.paths[i : i + self.batch_size], images.crop, images.size, self.skips)
            e, q = self._forward(x)
            if emb is None:
                emb = np.zeros((len(images), e.shape[1]), np.float32)
                qual = None if q is None else np.zeros(len(images), np.float32)
            emb[i : i + len(e)] = e.numpy() * ok[:, None]
            if qual is not None and q is not None:  # the model has a PRM: every batch has a q
                qual[i : i + len(e)] = np.where(ok, q.numpy(), -np.inf)
        return Embedded(emb if emb is not None else np.zeros((0, 0), np.float32), qual)

    def __call__(self, images: ImageSet) -> Embedded:
        if self.cache is None:
            return self._extract(images)
        namespace = f"{self.model_key}|{images.crop}|{images.size}|{self.flip}"
        rows = self.cache.load(namespace)
        keys = [file_key(p) for p in images.paths]
        todo = [i for i, k in enumerate(keys) if k not in rows]
        if todo:
            new = self._extract(ImageSet(tuple(images.paths[i] for i in todo), images.crop, images.size))
            for j, i in enumerate(todo):
                rows[keys[i]] = (new.emb[j], np.nan if new.quality is None else float(new.quality[j]))
            self.cache.save(namespace, rows)
        emb = np.stack([rows[k][0] for k in keys]) if keys else np.zeros((0, 0), np.float32)
        q = np.array([rows[k][1] for k in keys], np.float32)
        return Embedded(emb, None if keys and np.isnan(q).all() else q)
