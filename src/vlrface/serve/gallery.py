"""A searchable, persistent face gallery: FAISS inner product over L2-normalised embeddings.

Each entry is one enrolled image: an embedding, an identity string and the
image's quality score. Several entries may share an identity; identification
ranks identities by their best entry.

The vectors are kept in NumPy beside the FAISS index: they are the source of
truth, so removal works for every index type (HNSW cannot remove) and the index
can always be rebuilt. Index types (``INDEXES``):

* ``flat`` — exact search (``IndexFlatIP``), the default; right up to ~10⁶ entries.
* ``ivf`` — ``IndexIVFFlat``, trained on the gallery itself (k-means, √N lists)
  once it holds ``IVF_MIN_TRAIN`` entries; smaller galleries use exact search,
  which is faster there anyway. ``nprobe`` lists are visited per query.
* ``hnsw`` — ``IndexHNSWFlat`` (graph, no training); ``ef_search`` sets recall.

On disk (``save``/``load``) a gallery is a folder: ``gallery.json`` (metadata:
dim, index type, checkpoint hash, entry count, and the name of the current
snapshot) and one snapshot folder holding ``vectors.npy``, ``quality.npy``,
``ids.json`` and ``index.faiss``. A save writes a new snapshot and then swaps
``gallery.json`` with ``os.replace``, so a crash at any moment leaves the old
or the new gallery, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock, one writer is up to the user
    fcntl = None  # type: ignore[assignment]

from ..errors import UserError, brief
from ..eval.matchers import Matcher
from ..registry import Registry

FORMAT = "vlrface-gallery-1"
META = "gallery.json"
LOCK = ".lock"  # flock'ed by a writer while it saves (and by a reader that cleans up after a crashed save)
UNKNOWN = "unknown"
MAX_IDENTITY_CHARS = 200
MAX_TOP_K = 1000  # candidates a caller may ask for (HTTP top_k, identify --top); answers hold ≤ identities anyway
THRESHOLD_LIMIT = 2.0  # |threshold| beyond this is a typo: scores are cosines ([-1, 1]) or probabilities ([0, 1])
IVF_MIN_TRAIN = 1024  # k-means wants ~39 points per list; below this exact search is used
INDEXES: Registry = Registry("gallery index")


@INDEXES.register("flat")
def _flat(dim: int, vectors: np.ndarray, **_: Any) -> faiss.Index:
    return faiss.IndexFlatIP(dim)


@INDEXES.register("ivf")
def _ivf(dim: int, vectors: np.ndarray, nlist: int = 0, nprobe: int = 32, **_: Any) -> faiss.Index:
    if len(vectors) < IVF_MIN_TRAIN:
        return faiss.IndexFlatIP(dim)
    nlist = nlist or max(1, int(math.sqrt(len(vectors))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.nprobe = min(nprobe, nlist)
    return index


@INDEXES.register("hnsw")
def _hnsw(dim: int, vectors: np.ndarray, m: int = 32, ef_search: int = 128, **_: Any) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = ef_search
    return index


@dataclass
class Identification:
    """One probe's answer: the best identity (or ``"unknown"``) and its top-K candidates."""

    identity: str
    score: float
    unknown: bool
    low_quality: bool
    quality: float | None
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (identity, score), best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "score": self.score,
            "unknown": self.unknown,
            "low_quality": self.low_quality,
            "quality": self.quality,
            "candidates": [{"identity": i, "score": s} for i, s in self.candidates],
        }


class SaveError(UserError):
    """The gallery could not be written (disk full, not a folder, no permission); memory is left unchanged."""


def check_identity(name: str) -> str:
    """An identity name the gallery accepts: 1–200 printable characters, no surrounding spaces, not ``unknown``."""
    if not name.strip():
        raise UserError("the identity name is empty")
    if len(name) > MAX_IDENTITY_CHARS:
        raise UserError(f"identity name of {len(name)} characters; at most {MAX_IDENTITY_CHARS}")
    if not name.isprintable():
        raise UserError(f"identity name {name!r} holds control or invisible characters")
    if name != name.strip():
        raise UserError(f"identity name {name!r} has leading or trailing spaces")
    if name == UNKNOWN:
        raise UserError(f"'{UNKNOWN}' is reserved for probes below the threshold; pick another identity name")
    return name


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Gallery:
    """Embeddings + identity strings + per-entry quality behind a FAISS index."""

    def __init__(self, dim: int, index: str = "flat", checkpoint: str | None = None, **index_params: Any) -> None:
        INDEXES.get(index)  # unknown names fail here, listing the choices
        self.dim = dim
        self.index_type = index
        self.index_params = index_params
        self.checkpoint = checkpoint  # hash of the model that made the embeddings
        self.vectors = np.zeros((0, dim), np.float32)
        self.ids: list[str] = []
        self.quality = np.zeros(0, np.float32)
        self._index = self._build(self.vectors)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def identities(self) -> dict[str, int]:
        """Identity → number of enrolled entries."""
        out: dict[str, int] = {}
        for i in self.ids:
            out[i] = out.get(i, 0) + 1
        return out

    def _build(self, vectors: np.ndarray) -> faiss.Index:
        index = INDEXES.build(self.index_type, dim=self.dim, vectors=vectors, **self.index_params)
        if len(vectors):
            index.add(vectors)
        return index

    def _needs_training(self) -> bool:
        """An ``ivf`` gallery still on its exact fallback that has grown past the training minimum."""
        return self.index_type == "ivf" and isinstance(self._index, faiss.IndexFlat) and len(self) >= IVF_MIN_TRAIN

    def add(
        self, embeddings: np.ndarray, ids: Sequence[str], quality: np.ndarray | Sequence[float] | None = None
    ) -> None:
        """Enrol entries; embeddings are L2-normalised here, ``quality`` defaults to NaN (unknown)."""
        emb = _normalise(embeddings)
        ids = [str(i) for i in ids]
        for name in dict.fromkeys(ids):  # each distinct name once
            check_identity(name)
        q = np.full(len(ids), np.nan, np.float32) if quality is None else np.asarray(quality, np.float32).reshape(-1)
        if emb.shape[1] != self.dim:
            raise UserError(f"embedding size {emb.shape[1]} does not match the gallery's {self.dim}")
        if not (len(emb) == len(ids) == len(q)):
            raise ValueError(f"{len(emb)} embeddings, {len(ids)} ids and {len(q)} quality scores")
        self.vectors = np.concatenate([self.vectors, emb])
        self.ids += ids
        self.quality = np.concatenate([self.quality, q])
        if self._needs_training():
            self._index = self._build(self.vectors)
        else:
            self._index.add(emb)

    def remove(self, ids: str | Sequence[str]) -> int:
        """Remove every entry of the given identities; returns how many entries went."""
        drop = {ids} if isinstance(ids, str) else set(ids)
        keep = np.array([i not in drop for i in self.ids], dtype=bool)
        removed = int((~keep).sum())
        if removed:
            self.vectors = self.vectors[keep]
            self.ids = [i for i, k in zip(self.ids, keep) if k]
            self.quality = self.quality[keep]
            self._index = self._build(self.vectors)
        return removed

    @contextmanager
    def transaction(self) -> Iterator[Gallery]:
        """Changes made inside are undone when the block raises (e.g. the save after an enrolment failed),
        so memory never holds what the disk does not."""
        vectors, ids, quality, index = self.vectors, list(self.ids), self.quality, self._index
        try:
            yield self
        except BaseException:
            changed = self._index
            self.vectors, self.ids, self.quality, self._index = vectors, ids, quality, index
            if changed is index and index.ntotal != len(ids):  # entries were added to the old index in place
                try:
                    index.remove_ids(faiss.IDSelectorRange(len(ids), index.ntotal))
                except RuntimeError:  # HNSW cannot remove: rebuild from the vectors, the source of truth
                    self._index = self._build(self.vectors)
            raise

    def search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` entries per probe: ``scores [P,k]`` (cosine) and ``ids [P,k]`` (object array).

        Slots beyond the gallery size hold score ``-inf`` and id ``""``.
        """
        q = _normalise(probes)
        if q.shape[1] != self.dim:
            raise UserError(f"probe embedding size {q.shape[1]} does not match the gallery's {self.dim}")
        kk = min(k, len(self))
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), "", dtype=object)
        if kk:
            s, pos = self._index.search(q, kk)
            valid = pos >= 0  # approximate indexes may return fewer than kk
            scores[:, :kk] = np.where(valid, s, -np.inf)
            names = np.asarray([*self.ids, ""], dtype=object)
            ids[:, :kk] = names[np.where(valid, pos, len(self.ids))]
        return scores, ids

    def identify(
        self,
        probes: np.ndarray,
        k: int = 5,
        threshold: float = 0.3,
        probe_quality: np.ndarray | None = None,
        quality_threshold: float | None = None,
        matcher: Matcher | None = None,
    ) -> list[Identification]:
        """Top-``k`` distinct identities per probe.

        By default an identity scores its best entry (cosine, through the
        index); a ``matcher`` (e.g. NAC, :mod:`vlrface.eval.matchers`) scores
        every identity exactly instead, and ``threshold`` applies to its score.
        The answer is ``"unknown"`` when the best score is below ``threshold``;
        a probe whose quality is below ``quality_threshold`` is flagged
        ``low_quality`` (still searched: the flag is advice, not a verdict).
        """
        if k < 1:
            raise UserError(f"top-k must be ≥ 1, got {k}")
        if not math.isfinite(threshold) or (quality_threshold is not None and not math.isfinite(quality_threshold)):
            raise UserError(f"thresholds must be finite numbers, got {threshold} and {quality_threshold}")
        if matcher is None or not len(self):
            ranked = self._ranked(probes, k)
        else:
            ranked = _matcher_ranked(matcher.fit(self.vectors, self.ids), probes, k)
        out = []
        for p, cands in enumerate(ranked):
            best_id, best = cands[0] if cands else (UNKNOWN, float("-inf"))
            q = None if probe_quality is None else float(probe_quality[p])
            low = quality_threshold is not None and q is not None and not q >= quality_threshold
            unknown = best < threshold
            out.append(Identification(UNKNOWN if unknown else best_id, best, unknown, low, q, cands))
        return out

    def _ranked(self, probes: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per probe, the top-``k`` identities by their best entry's cosine (index search).

        ``k`` is clamped to the number of identities, so no array is larger than the gallery.
        """
        counts = self.identities
        k = min(k, len(counts))
        if not k:  # empty gallery: no candidates (the probes' size is still checked)
            return [[] for _ in self.search(probes, 0)[0]]
        scores, ids = self.search(probes, min(len(self), k * max(counts.values())))
        ranked = []
        for p in range(len(scores)):
            seen: dict[str, float] = {}
            for s, i in zip(scores[p], ids[p]):
                if i and i not in seen:
                    seen[i] = float(s)
                if len(seen) == k:
                    break
            ranked.append(list(seen.items()))
        return ranked

    # --- persistence -----------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dim": self.dim,
            "index": self.index_type,
            "index_params": self.index_params,
            "checkpoint": self.checkpoint,
            "entries": len(self),
            "identities": len(self.identities),
        }

    def save(self, directory: str | Path) -> None:
        """Write a fresh snapshot, then atomically point ``gallery.json`` at it; old snapshots go.

        A :class:`SaveError` (one line) when the folder cannot be written; the previous gallery on
        disk is then untouched. Temp snapshots left by a save that was killed are removed first.
        """
        directory = Path(directory)
        try:
            if directory.exists() and not directory.is_dir():
                raise NotADirectoryError(f"{directory} is a file, not a gallery folder")
            directory.mkdir(parents=True, exist_ok=True)
            with _writer_lock(directory, wait=True):
                _remove_stale(directory, keep=None)
                self._write_snapshot(directory)
        except OSError as e:
            raise SaveError(f"cannot save the gallery in {directory}: {brief(e)}") from None

    def _write_snapshot(self, directory: Path) -> None:
        snap = f"snapshot-{uuid.uuid4().hex[:12]}"
        tmp = directory / f".{snap}.tmp"
        tmp.mkdir()
        try:
            _write(tmp / "vectors.npy", lambda f: np.save(f, self.vectors))
            _write(tmp / "quality.npy", lambda f: np.save(f, self.quality))
            _write(tmp / "ids.json", lambda f: f.write(json.dumps(self.ids).encode()))
            _write(tmp / "index.faiss", lambda f: f.write(faiss.serialize_index(self._index).tobytes()))
            os.replace(tmp, directory / snap)
            atomic_write(
                directory / META, lambda f: f.write(json.dumps({**self.meta(), "snapshot": snap}, indent=1).encode())
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _remove_stale(directory, keep=snap)

    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        return (Path(directory) / META).is_file()

    @classmethod
    def load(cls, directory: str | Path, checkpoint: str | None = None) -> Gallery:
        """Read a saved gallery; ``checkpoint`` (a hash) must match the one it was built with, when both are known."""
        directory = Path(directory)
        if not cls.exists(directory):
            raise UserError(f"no gallery in {directory} (build one with --build FOLDER or enrol entries)")
        try:  # allow_pickle=False: the arrays are plain numbers, never code
            meta = json.loads((directory / META).read_text())
            snap = directory / Path(meta["snapshot"]).name
            ids = json.loads((snap / "ids.json").read_text())
            vectors = np.load(snap / "vectors.npy", allow_pickle=False)
            quality = np.load(snap / "quality.npy", allow_pickle=False)
            index = faiss.deserialize_index(np.fromfile(snap / "index.faiss", dtype=np.uint8))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError) as e:
            raise UserError(f"gallery {directory} is damaged ({type(e).__name__}: {brief(e, 120)})") from None
        shapes_ok = (
            isinstance(meta, dict)
            and isinstance(ids, list)
            and all(isinstance(i, str) for i in ids)
            and isinstance(vectors, np.ndarray)
            and isinstance(quality, np.ndarray)
            and vectors.ndim == 2
            and vectors.shape[1] == meta.get("dim")
            and index.d == meta.get("dim")
        )
        if (
            meta.get("format") != FORMAT
            or not shapes_ok
            or not (len(ids) == len(vectors) == len(quality) == index.ntotal)
        ):
            raise UserError(f"gallery {directory} is damaged or of an unknown format")
        with _writer_lock(directory, wait=False) as unlocked:  # no save under way: clear a crashed save's leftovers
            if unlocked:
                _remove_stale(directory, keep=snap.name)
        if checkpoint and meta.get("checkpoint") and checkpoint != meta["checkpoint"]:
            raise UserError(
                f"gallery {directory} was built with another checkpoint ({meta['checkpoint'][:12]}); "
                "rebuild it with --build"
            )
        g = cls(int(meta["dim"]), meta["index"], meta.get("checkpoint") or checkpoint, **meta.get("index_params", {}))
        g.vectors, g.ids, g.quality, g._index = vectors.astype(np.float32), ids, quality.astype(np.float32), index
        return g


def _matcher_ranked(matcher: Matcher, probes: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Per probe, the top-``k`` identities by a fitted matcher's scores (exact, over all identities)."""
    scores = matcher.scores(_normalise(probes))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(str(matcher.identities[j]), float(scores[p, j])) for j in row] for p, row in enumerate(order)]


@contextmanager
def _writer_lock(directory: Path, wait: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on ``directory/.lock`` (one writer at a time, across processes); yields whether
    it was got. A folder that cannot hold the lock file (read-only) yields False: nobody saves there."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if wait:
            raise
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            if wait:
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _remove_stale(directory: Path, keep: str | None) -> None:
    """Leftovers of saves killed mid-way: temp snapshots (``.snapshot-*.tmp``), temp ``gallery.json``
    files, and snapshot folders other than ``keep`` (None: leave complete snapshots alone).
    Call it holding the writer lock."""
    for path in directory.glob(".snapshot-*.tmp"):
        shutil.rmtree(path, ignore_errors=True)
    for path in directory.glob(f".{META}.*.tmp"):
        path.unlink(missing_ok=True)
    if keep is not None:
        for path in directory.glob("snapshot-*"):
            if path.name != keep:
                shutil.rmtree(path, ignore_errors=True)


def _write(path: Path, write: Callable[[Any], Any]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write to a temp file in the same folder, fsync, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _write(Path(tmp), write)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
