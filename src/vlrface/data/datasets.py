"""Training data for the trainer: deterministic, resumable batches (the data contract).

Batch ``k`` is a pure function of ``(seed, k)``: the stream of samples is the
concatenation of per-epoch permutations, each drawn from a generator seeded by
``(seed, epoch)``, and batch ``k`` is positions ``k·B … k·B+B−1`` of it. So a
run resumed at step ``k`` sees exactly the batches an uninterrupted run would.

Sets that fit in :data:`CACHE_BYTES` are decoded once into a uint8 array;
larger ones are decoded per batch by a ``DataLoader`` (``num_workers``
processes) fed by the same deterministic index stream.

So that the accelerator never waits for the host, batches are made ahead of
use: by the DataLoader workers when there are any, else by a background thread
(``prefetch`` batches deep; NumPy gathers, the uint8→float conversion and
OpenCV decoding release the GIL). With ``pin_memory`` they arrive in
page-locked memory, so the trainer's ``.to(device, non_blocking=True)`` is an
asynchronous copy. Read-ahead never changes which batch comes at which step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig, UIConfig
from ..errors import UserError
from ..preprocess import IMAGE_SIZE
from ..registry import Registry
from .degrade import make_ui
from .readers import (
    ATT_TRAIN_SUBJECTS,
    IMAGE_EXTS,
    ImageList,
    SkipReport,
    lfw_vlr_split,
    read_att,
    read_image,
    read_image_folder,
    to_face,
)
from .synth import SynthFaces

CACHE_BYTES = 2 * 2**30  # decode up to this much (uint8) once and keep it in memory
UI_FOLDER_MAX = 4096  # images read from a UI folder (a deterministic sample beyond that)
_IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3
_END = object()


@dataclass
class Source:
    """Sample ``i`` → aligned RGB uint8 112×112 (``None`` if unreadable), with its label."""

    labels: np.ndarray
    num_classes: int
    load: Callable[[int], np.ndarray | None]


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[B,H,W,3]`` → float ``[B,3,H,W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


class _Lazy(Dataset):
    """Per-index decoding for the DataLoader path; failures are returned, not raised."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source.labels)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None]:
        return i, self.source.load(i)


def _collate(items: list[tuple[int, np.ndarray | None]]) -> tuple[list[int], torch.Tensor, np.ndarray]:
    """(ids that failed, decoded images as float ``[B,3,H,W]``, their ids); runs in the workers."""
    ok = [(i, im) for i, im in items if im is not None]
    bad = [i for i, im in items if im is None]
    images = np.stack([im for _, im in ok]) if ok else np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return bad, to_float(images), np.array([i for i, _ in ok], np.int64)


def prefetch(items: Iterator, depth: int) -> Iterator:
    """Yield ``items`` in order while a daemon thread runs up to ``depth`` ahead (0: no thread).

    Errors in the thread are re-raised here; closing the returned generator
    stops the thread at its next hand-over.
    """
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:
            put((_END, e))

    threading.Thread(target=work, daemon=True, name="vlrface-prefetch").start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()


def _pinned(items: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for images, labels in items:
        yield images.pin_memory(), labels.pin_memory()


class TrainData:
    """Labelled training images with deterministic, resumable batches and a UI set."""

    def __init__(
        self,
        source: Source,
        seed: int,
        ui: UIConfig | None = None,
        num_workers: int = 0,
        skips: SkipReport | None = None,
        paths: list[Path] | None = None,
        prefetch: int = 2,
    ) -> None:
        self.seed = int(seed)
        self.ui_cfg = ui or UIConfig()
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.num_classes = source.num_classes
        self.skips = skips or SkipReport()
        self._source, self._paths = source, paths
        self._cache: np.ndarray | None = None
        self._perms: dict[int, np.ndarray] = {}
        self._perms_lock = threading.Lock()  # read-ahead threads of two iterators may draw at once
        self._ui_pool: np.ndarray | None = None
        index = np.arange(len(source.labels))
        if len(index) * _IMAGE_BYTES <= CACHE_BYTES:
            with ThreadPoolExecutor(max(num_workers, 1)) as pool:  # OpenCV decodes without the GIL
                decoded = list(pool.map(source.load, index.tolist()))
            ok = [i for i, im in enumerate(decoded) if im is not None]
            self._note_bad([i for i, im in enumerate(decoded) if im is None])
            self._cache = np.stack([im for im in decoded if im is not None]) if ok else None
            index = np.array(ok, np.int64)
            self.skips.print_summary()
        if len(index) == 0:
            raise UserError("the training data has no readable images")
        self.index = index  # sample ids (into source) that take part in training
        self.labels = source.labels[index]

    @property
    def num_images(self) -> int:
        return len(self.index)

    def _note_bad(self, ids: list[int]) -> None:
        for i in ids:
            self.skips.add(self._paths[i] if self._paths else f"sample {i}", "unreadable or corrupt")

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._perms_lock:
            if epoch not in self._perms:
                if len(self._perms) >= 4:
                    self._perms.pop(min(self._perms))
                self._perms[epoch] = np.random.default_rng((self.seed, 0xDA7A, epoch)).permutation(len(self.index))
            return self._perms[epoch]

    def positions(self, batch_size: int, step: int) -> np.ndarray:
        """Row numbers (into ``self.index``) of batch ``step``."""
        q = step * batch_size + np.arange(batch_size)
        n = len(self.index)
        epochs = q // n
        return np.concatenate([self._permutation(int(e))[q[epochs == e] % n] for e in np.unique(epochs)])

    def batches(
        self, batch_size: int, start_step: int = 0, pin_memory: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless ``(images float[B,3,112,112] in [0,1], labels long[B])`` from ``start_step``.

        Made ahead of use (see module docstring); ``pin_memory`` needs CUDA.
        """
        if self._cache is None and self.num_workers > 0:
            return self._lazy_batches(batch_size, start_step, pin_memory)  # the workers read ahead and pin
        items = (
            self._cached_batches(self._cache, batch_size, start_step)
            if self._cache is not None
            else self._lazy_batches(batch_size, start_step, False)
        )
        return prefetch(_pinned(items) if pin_memory else items, self.prefetch)

    def _cached_batches(
        self, cache: np.ndarray, batch_size: int, start_step: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = start_step
        while True:
            rows = self.positions(batch_size, step)
            yield to_float(cache[rows]), torch.from_numpy(self.labels[rows])
            step += 1

    def _lazy_batches(
        self, batch_size: int, start_step: int, pin_memory: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def sampler() -> Iterator[list[int]]:
            step = start_step
            while True:
                yield self.index[self.positions(batch_size, step)].tolist()
                step += 1

        workers = self.num_workers
        loader = DataLoader(
            _Lazy(self._source),
            batch_sampler=sampler(),
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin_memory,
            prefetch_factor=max(self.prefetch, 1) if workers else None,
            persistent_workers=False,
        )
        try:
            for bad, images, ids in loader:
                self._note_bad(bad)  # the batch shrinks; the order of later batches is unchanged
                labels = torch.from_numpy(self._source.labels[ids])
                yield images, labels.pin_memory() if pin_memory else labels
        finally:
            self.skips.print_summary()

    def ui_images(self, n: int, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` unrecognisable images float ``[n,3,112,112]``: the UI folder, else :func:`make_ui`.

        ``device``: where the images are made (``make_ui`` runs there; its random draws stay on the CPU).
        """
        rng = np.random.default_rng((int(seed), 0x0111))
        if self.ui_cfg.folder:
            if self._ui_pool is None:
                self._ui_pool = self._read_ui_folder(Path(self.ui_cfg.folder))
            pool = self._ui_pool
            return to_float(pool[rng.choice(len(pool), n, replace=n > len(pool))]).to(device)
        rows = rng.choice(len(self.index), n, replace=n > len(self.index))
        if self._cache is not None:
            images = to_float(self._cache[rows])
        else:
            ids = self.index[rows].tolist()
            loaded = [self._source.load(i) for i in ids]
            self._note_bad([i for i, im in zip(ids, loaded) if im is None])  # as in training, they drop out
            images = to_float(np.stack([im for im in loaded if im is not None]))
        gen = torch.Generator().manual_seed(int(seed))
        return make_ui(images.to(device), gen, self.ui_cfg.max_px, self.ui_cfg.nonface_fraction)

    def _read_ui_folder(self, root: Path) -> np.ndarray:
        if not root.is_dir():
            raise UserError(f"data.ui.folder not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if len(files) > UI_FOLDER_MAX:
            files = [
                files[i] for i in np.sort(np.random.default_rng(0).choice(len(files), UI_FOLDER_MAX, replace=False))
            ]
        skips = SkipReport()
        images = [to_face(im) for p in files if (im := read_image(p, skips)) is not None]
        skips.print_summary()
        if not images:
            raise UserError(f"data.ui.folder {root} has no readable images ({', '.join(IMAGE_EXTS)})")
        return np.stack(images)


# ------------------------------------------------------------ data kinds
DATA_KINDS: Registry = Registry("data kind")


def _files(paths: list[Path], labels: list[int], num_classes: int, crop: str) -> Source:
    def load(i: int) -> np.ndarray | None:
        img = read_image(paths[i])
        return None if img is None else to_face(img, crop)

    return Source(np.asarray(labels, np.int64), num_classes, load)


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise UserError(f"data.root is required for data.kind={cfg.kind}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise UserError(f"data.root not found: {root}")
    return root


@DATA_KINDS.register("synth")
def _synth(cfg: DataConfig, seed: int) -> tuple[Source, None]:
    """Identities ``identity_offset …+num_identities``, ``images_per_identity`` each (synth seed = run seed)."""
    faces, per = SynthFaces(seed), cfg.images_per_identity  # both ≥ 1: vlrface.config.CHECKS
    labels = np.repeat(np.arange(cfg.num_identities), per)
    return Source(labels, cfg.num_identities, lambda i: faces.render(cfg.identity_offset + i // per, i % per)), None


def _from_list(images: ImageList, crop: str) -> tuple[Source, list[Path]]:
    return _files(images.paths, images.labels, len(images.names), crop), images.paths


@DATA_KINDS.register("folder")
def _folder(cfg: DataConfig, seed: int) -> tuple[Source, list[Path]]:
    """Every class folder under ``root`` (layout ``ID/img.ext``), crop ``cfg.crop``."""
    return _from_list(read_image_folder(_root(cfg)), cfg.crop)


@DATA_KINDS.register("att")
def _att(cfg: DataConfig, seed: int) -> tuple[Source, list[Path]]:
    """att-vlr training people only: subjects 1–20; ``crop=default`` means the ``att`` crop."""
    crop = "att" if cfg.crop == "default" else cfg.crop
    return _from_list(read_att(_root(cfg), ATT_TRAIN_SUBJECTS), crop)


@DATA_KINDS.register("lfw-vlr")
def _lfw_vlr(cfg: DataConfig, seed: int) -> tuple[Source, list[Path]]:
    """lfw-vlr training people only (all their images); ``crop=default`` means the ``lfw`` crop."""
    root = _root(cfg)
    train, _ = lfw_vlr_split(root)
    crop = "lfw" if cfg.crop == "default" else cfg.crop
    return _from_list(read_image_folder(root).select(train), crop)


def build_train_data(cfg: DataConfig, seed: int) -> TrainData:
    """The trainer's data: ``cfg.kind`` from :data:`DATA_KINDS`, batches seeded by ``seed``."""
    source, paths = DATA_KINDS.get(cfg.kind)(cfg, seed)
    return TrainData(source, seed, cfg.ui, cfg.num_workers, paths=paths, prefetch=cfg.prefetch)
