"""Evaluation protocols: dataset layouts → embeddings → the protocol's figures.

A protocol is built by name from :data:`PROTOCOLS`, ``load(root)`` checks the
layout (a wrong layout is a one-line :class:`UserError` naming what is
missing) and ``run(embed_fn, probe_sizes)`` returns ``{setting: results}``,
where a setting is one probe condition (``"hr"``, ``"16px"``, ``"d1"``,
``"test"`` …) and ``results`` is the dict built by :func:`identify` or
:func:`verify`. The layouts accepted are documented in docs/evaluation.md.

Gallery protocols take an optional :class:`~vlrface.eval.matchers.Matcher`:
without one every gallery image is ranked by cosine (image level); with one
the gallery is scored per identity by the matcher (``cosine``, ``nac``).
The ``-open`` variants of att-vlr and lfw-vlr hold a fixed, seeded share of
the test people out of the gallery, so their probes are non-mated.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from ..data.readers import IMAGE_EXTS, lfw_vlr_split, read_att, read_image_folder
from ..errors import UserError
from ..registry import Registry
from . import metrics as M
from .embed import Embedded, EmbedFn, ImageSet
from .matchers import Matcher

PROTOCOLS: Registry[Protocol] = Registry("protocol")
CMC_RANKS = tuple(range(1, 21))
ROC_FARS = tuple(float(f) for f in np.logspace(-4, 0, 33))
MAX_PAIRS = 5_000_000  # all-pairs verification is reported when probes × gallery ≤ this
VLR_SIZES: tuple[int | None, ...] = (None, 16, 12, 8)  # None = HR (un-degraded) probes
OPEN_SET_FRACTION = 0.3  # share of test people held out of the gallery in the -open protocols
OPEN_SET_SEED = 0
Identity = str | int  # how protocols name people: folder or file-name ids, SCface's numbers


# ------------------------------------------------------------ figures
def verify(scores: np.ndarray, is_genuine: np.ndarray, pair_quality: np.ndarray | None = None) -> dict | None:
    """Verification figures for scored pairs; ERC when pair quality is given; None without both classes."""
    gen, imp = scores[is_genuine], scores[~is_genuine]
    if gen.size == 0 or imp.size == 0:
        return None
    out = {
        "n_genuine": int(gen.size),
        "n_impostor": int(imp.size),
        "tar_at_far": M.tar_at_far(gen, imp, M.FARS),
        "eer": M.eer(gen, imp),
        "auc": M.auc(gen, imp),
        "roc": {"far": list(ROC_FARS), "tar": list(M.tar_at_far(gen, imp, ROC_FARS).values())},
    }
    if pair_quality is not None:
        fmr = max(1e-3, 10 / imp.size)  # at least ten false matches define the threshold
        ratios = np.linspace(0, 0.95, 20)
        out["erc"] = {
            "fmr": fmr,
            "reject_ratios": ratios.tolist(),
            "fnmr": M.erc(scores, is_genuine, pair_quality, fmr, ratios).tolist(),
            "pauc_20": M.edc_pauc(scores, is_genuine, pair_quality, fmr, 0.2),
        }
    return out


def identify(
    gallery: Embedded,
    gallery_ids: Sequence[Hashable],
    probes: Embedded,
    probe_ids: Sequence[Hashable],
    max_pairs: int = MAX_PAIRS,
    matcher: Matcher | None = None,
) -> dict:
    """Closed-set CMC + mAP, open-set TPIR20@FPIR and DIR@FAR when some probes are unmated, and
    all probe×gallery pairs as verification (+ ERC with quality) when there are ≤ ``max_pairs``.

    With a ``matcher`` the identification figures rank gallery identities by
    its scores; verification pairs stay plain image cosines.
    """
    out: dict = {"n_gallery": len(gallery_ids), "n_probes": len(probe_ids)}
    if matcher is None:
        stats = M.embedding_probe_stats(probes.emb, probe_ids, gallery.emb, gallery_ids)
    else:
        fitted = matcher.fit(gallery.emb, gallery_ids)
        stats = M.scored_probe_stats(fitted.scores, probes.emb, probe_ids, fitted.identities)
        out |= {"matcher": fitted.name, "n_gallery_identities": len(fitted.identities)}
    out |= {
        "n_mated": int(stats.mated.sum()),
        "cmc": M.cmc_from_stats(stats, CMC_RANKS),
        "map": M.map_from_stats(stats),
    }
    if not stats.mated.all():
        out["open_set"] = {
            "rank": 20,
            "n_unmated": int((~stats.mated).sum()),
            "tpir_at_fpir": M.tpir_from_stats(stats, M.FPIRS, 20),
            "dir_at_far": M.dir_from_stats(stats, M.DIR_FARS),
        }
    if len(probe_ids) * len(gallery_ids) <= max_pairs:
        genuine = M.same_identity(probe_ids, gallery_ids)
        q = None
        if probes.quality is not None and gallery.quality is not None:
            q = np.minimum(probes.quality[:, None], gallery.quality[None, :]).ravel()
        res = verify((probes.emb @ gallery.emb.T).ravel(), genuine.ravel(), q)
        if res is not None:
            out["verification"] = res
    return out


def setting_name(size: int | None) -> str:
    """A probe setting's name in results: ``"hr"`` for un-degraded probes (``None``), else ``"16px"`` etc."""
    return "hr" if size is None else f"{size}px"


# ------------------------------------------------------------ layout helpers
def _dir(root: Path, rel: str, what: str) -> Path:
    path = root / rel
    if not path.is_dir():
        raise UserError(f"{root}: missing {what} folder '{rel}' (see docs/evaluation.md for the layout)")
    return path


def _file(root: Path, rel: str, what: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise UserError(f"{root}: missing {what} file '{rel}' (see docs/evaluation.md for the layout)")
    return path


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _nonempty(files: list[Path], folder: Path, what: str) -> list[Path]:
    if not files:
        raise UserError(f"{folder}: no {what} images ({', '.join(IMAGE_EXTS)}) found")
    return files


def _prefix_id(path: Path) -> str:
    """TinyFace / SurvFace naming ``ID_k.jpg``: the identity is the text before the first '_'."""
    return path.stem.split("_", 1)[0]


def _subdir_or_self(root: Path, name: str) -> Path:
    return root / name if (root / name).is_dir() else root


# ------------------------------------------------------------ protocols
class Protocol(ABC):
    """``load(root)`` validates and indexes the files; ``run`` computes the figures."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line for reports: data, settings and headline metrics
    crop: ClassVar[str] = "default"

    def __init__(self) -> None:
        self.root: Path | None = None

    @abstractmethod
    def load(self, root: str | Path) -> Self: ...

    @abstractmethod
    def run(
        self, embed_fn: EmbedFn, probe_sizes: Sequence[int | None] | None = None, matcher: Matcher | None = None
    ) -> dict[str, dict]: ...

    def _root(self, root: str | Path) -> Path:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"data folder not found: {root}")
        self.root = root
        return root


class GalleryProbeProtocol(Protocol):
    """Shared runner: one gallery (at full resolution) against probe sets per setting."""

    default_sizes: ClassVar[tuple[int | None, ...]] = (None,)
    gallery: list[Path]
    gallery_ids: list[Identity]
    probes: list[Path]  # the one "test" setting's probes, unless probe_sets is overridden
    probe_ids: list[Identity]

    def probe_sets(self) -> dict[str, tuple[list[Path], list[Identity]]]:
        """Probe files and ids per native setting (one ``"test"`` setting unless overridden)."""
        return {"test": (self.probes, self.probe_ids)}

    def _setting(self, name: str, size: int | None) -> str:
        """``"test"``/``"d1"`` for native probes of native protocols, else ``"16px"``, ``"hr"``, ``"d1@8px"``."""
        if size is None and self.default_sizes == (None,):
            return name
        return setting_name(size) if name == "test" else f"{name}@{setting_name(size)}"

    def run(
        self, embed_fn: EmbedFn, probe_sizes: Sequence[int | None] | None = None, matcher: Matcher | None = None
    ) -> dict[str, dict]:
        gallery = embed_fn(ImageSet(tuple(self.gallery), self.crop))
        sizes = tuple(probe_sizes) if probe_sizes else self.default_sizes
        out = {}
        for name, (paths, ids) in self.probe_sets().items():
            for size in sizes:
                probes = embed_fn(ImageSet(tuple(paths), self.crop, size))
                out[self._setting(name, size)] = identify(gallery, self.gallery_ids, probes, ids, matcher=matcher)
        return out


def held_out_people(
    people: Sequence[Identity], fraction: float = OPEN_SET_FRACTION, seed: int = OPEN_SET_SEED
) -> set[Identity]:
    """The seeded choice of ``round(fraction · n)`` people (of the sorted distinct names) left out of the gallery."""
    names = sorted(set(people))
    chosen = np.random.default_rng(seed).choice(len(names), round(fraction * len(names)), replace=False)
    return {names[i] for i in chosen}


class OpenSetSplit(GalleryProbeProtocol):
    """Mixin for an ``-open`` variant: the held-out test people lose their gallery image; their probes stay, non-mated.

    Only test people are involved (training people are never touched), and
    the choice depends on the names alone, so every model sees the same split.
    """

    def load(self, root: str | Path) -> Self:
        super().load(root)  # type: ignore[safe-super]  # a mixin: super() is AttVLR's or LfwVLR's load (the MRO)
        out = held_out_people(self.gallery_ids)
        keep = [i for i, who in enumerate(self.gallery_ids) if who not in out]
        self.gallery = [self.gallery[i] for i in keep]
        self.gallery_ids = [self.gallery_ids[i] for i in keep]
        return self


@PROTOCOLS.register("att-vlr")
class AttVLR(GalleryProbeProtocol):
    name = "att-vlr"
    description = (
        "ORL/AT&T subjects 21–40 (test only): gallery image 1 at full resolution, "
        "probes images 2–10 as read (hr) and degraded to 16/12/8 px"
    )
    crop = "att"
    default_sizes = VLR_SIZES
    subjects = range(21, 41)

    def load(self, root: str | Path) -> Self:
        images = read_att(self._root(root), self.subjects)
        self.gallery, self.gallery_ids, self.probes, self.probe_ids = [], [], [], []
        for path, y in zip(images.paths, images.labels):
            who = images.names[y]
            if path.stem == "1":
                self.gallery.append(path)
                self.gallery_ids.append(who)
            elif path.stem in {str(i) for i in range(2, 11)}:
                self.probes.append(path)
                self.probe_ids.append(who)
        lacking = sorted(set(images.names) - set(self.gallery_ids))
        if lacking:
            raise UserError(f"{root}: missing gallery image 1.pgm for {', '.join(lacking)}")
        return self


@PROTOCOLS.register("lfw-vlr")
class LfwVLR(GalleryProbeProtocol):
    name = "lfw-vlr"
    description = (
        "LFW lfw-vlr test people (≥5 images, every 4th by name): first image at full resolution as gallery, "
        "next ≤10 images as probes, as read (hr) and degraded to 16/12/8 px"
    )
    crop = "lfw"
    default_sizes = VLR_SIZES
    max_probes = 10

    def load(self, root: str | Path) -> Self:
        root = self._root(root)
        _, test = lfw_vlr_split(root)
        people = read_image_folder(root).select(test)
        self.gallery, self.gallery_ids, self.probes, self.probe_ids = [], [], [], []
        for y, name in enumerate(people.names):
            files = sorted((p for p, label in zip(people.paths, people.labels) if label == y), key=lambda p: p.name)
            self.gallery.append(files[0])
            self.gallery_ids.append(name)
            self.probes += files[1 : 1 + self.max_probes]
            self.probe_ids += [name] * len(files[1 : 1 + self.max_probes])
        if not self.gallery:
            raise UserError(f"{root}: no person has ≥ 5 images; lfw-vlr needs LFW's Name/Name_NNNN.jpg layout")
        return self


@PROTOCOLS.register("att-vlr-open")
class AttVLROpen(OpenSetSplit, AttVLR):
    name = "att-vlr-open"
    description = (
        f"att-vlr with {OPEN_SET_FRACTION:.0%} of the test subjects (seeded choice) out of the gallery: "
        "their probes are non-mated; DIR@FAR and TPIR@FPIR at hr/16/12/8 px"
    )


@PROTOCOLS.register("lfw-vlr-open")
class LfwVLROpen(OpenSetSplit, LfwVLR):
    name = "lfw-vlr-open"
    description = (
        f"lfw-vlr with {OPEN_SET_FRACTION:.0%} of the test people (seeded choice) out of the gallery: "
        "their probes are non-mated; DIR@FAR and TPIR@FPIR at hr/16/12/8 px"
    )


@PROTOCOLS.register("tinyface")
class TinyFace(GalleryProbeProtocol):
    name = "tinyface"
    description = (
        "TinyFace Testing_Set: Probe against Gallery_Match + Gallery_Distractor (native low resolution); "
        "rank-1/5/10/20 and mAP"
    )

    def load(self, root: str | Path) -> Self:
        base = _subdir_or_self(self._root(root), "Testing_Set")
        folders = {k: _dir(base, k, "TinyFace") for k in ("Probe", "Gallery_Match", "Gallery_Distractor")}
        self.probes = _nonempty(_images(folders["Probe"]), folders["Probe"], "probe")
        match = _nonempty(_images(folders["Gallery_Match"]), folders["Gallery_Match"], "gallery")
        distractors = _images(folders["Gallery_Distractor"])
        self.probe_ids = [_prefix_id(p) for p in self.probes]
        self.gallery = match + distractors
        self.gallery_ids = [*map(_prefix_id, match), *(f"distractor:{p.name}" for p in distractors)]
        return self


@PROTOCOLS.register("scface")
class SCface(GalleryProbeProtocol):
    name = "scface"
    description = (
        "SCface IDs 51–130: frontal mugshot gallery against visible-camera (cam1–5) probes "
        "at distances d1 (4.2 m), d2 (2.6 m), d3 (1.0 m); rank-1 per distance"
    )
    test_ids = range(51, 131)
    cameras = range(1, 6)
    mugshots = "mugshot_frontal_cropped_all"

    def load(self, root: str | Path) -> Self:
        root = self._root(root)
        folder = _dir(root, self.mugshots, "SCface mugshot")
        pattern = re.compile(r"(\d{3})_frontal", re.I)
        gal = [(p, int(m.group(1))) for p in _images(folder) if (m := pattern.fullmatch(p.stem))]
        gal = [(p, i) for p, i in gal if i in self.test_ids]
        if not gal:
            raise UserError(f"{folder}: no mugshots NNN_frontal.jpg for test IDs 051–130")
        self.gallery, self.gallery_ids = [p for p, _ in gal], [i for _, i in gal]
        self.distances: dict[str, tuple[list[Path], list[Identity]]] = {}
        probe = re.compile(r"(\d{3})_cam(\d+)_(\d+)", re.I)
        for d in (1, 2, 3):
            folder = _dir(root, f"surveillance_cameras_distance_{d}", "SCface probe")
            found = [
                (p, int(m.group(1)))
                for p in _images(folder, recursive=True)
                if (m := probe.fullmatch(p.stem))
                and int(m.group(2)) in self.cameras
                and int(m.group(1)) in self.test_ids
            ]
            if not found:
                raise UserError(f"{folder}: no probes NNN_camK_{d}.jpg (K in 1–5) for test IDs 051–130")
            self.distances[f"d{d}"] = ([p for p, _ in found], [i for _, i in found])
        return self

    def probe_sets(self) -> dict[str, tuple[list[Path], list[Identity]]]:
        return self.distances


@PROTOCOLS.register("survface-openset")
class SurvFaceOpenSet(GalleryProbeProtocol):
    name = "survface-openset"
    description = (
        "QMUL-SurvFace Face_Identification_Test_Set: gallery against mated_probe + unmated_probe; "
        "TPIR20@FPIR 0.3/0.2/0.1"
    )

    def load(self, root: str | Path) -> Self:
        base = _subdir_or_self(self._root(root), "Face_Identification_Test_Set")
        folders = {
            k: _dir(base, k, "QMUL-SurvFace identification") for k in ("gallery", "mated_probe", "unmated_probe")
        }
        self.gallery = _nonempty(_images(folders["gallery"]), folders["gallery"], "gallery")
        mated = _nonempty(_images(folders["mated_probe"]), folders["mated_probe"], "mated probe")
        unmated = _images(folders["unmated_probe"])
        self.gallery_ids = [_prefix_id(p) for p in self.gallery]
        self.probes = mated + unmated
        self.probe_ids = [*map(_prefix_id, mated), *(f"unmated:{p.name}" for p in unmated)]
        return self


@PROTOCOLS.register("folders")
class Folders(GalleryProbeProtocol):
    name = "folders"
    description = "generic gallery/ID/*.jpg against probe/ID/*.jpg; probes whose ID has no gallery folder are unmated"

    def load(self, root: str | Path) -> Self:
        root = self._root(root)
        gallery = read_image_folder(_dir(root, "gallery", "gallery"))
        probes = read_image_folder(_dir(root, "probe", "probe"))
        self.gallery, self.gallery_ids = gallery.paths, [gallery.names[y] for y in gallery.labels]
        self.probes, self.probe_ids = probes.paths, [probes.names[y] for y in probes.labels]
        return self


# ------------------------------------------------------------ pair protocols
class PairProtocol(Protocol):
    """Shared runner for pair lists: embed both sides, score each pair, :func:`verify`.

    With a probe size, the second image of every pair is degraded (HR–VLR pairs).
    """

    pairs_a: list[Path]
    pairs_b: list[Path]
    genuine: np.ndarray

    def run(
        self, embed_fn: EmbedFn, probe_sizes: Sequence[int | None] | None = None, matcher: Matcher | None = None
    ) -> dict[str, dict]:
        if matcher is not None:
            raise UserError(
                f"{self.name} scores pairs, it has no gallery: --matcher applies to identification protocols"
            )
        a = embed_fn(ImageSet(tuple(self.pairs_a), self.crop))
        out = {}
        for size in tuple(probe_sizes) if probe_sizes else (None,):
            b = embed_fn(ImageSet(tuple(self.pairs_b), self.crop, size))
            q = None if a.quality is None or b.quality is None else np.minimum(a.quality, b.quality)
            res = verify(np.einsum("nd,nd->n", a.emb, b.emb), self.genuine, q)
            if res is None:
                raise UserError(f"{self.root}: the pair list needs both genuine and impostor pairs")
            out["test" if size is None else setting_name(size)] = {"n_pairs": len(self.genuine), "verification": res}
        return out


@PROTOCOLS.register("lfw-pairs")
class LfwPairs(PairProtocol):
    name = "lfw-pairs"
    description = "LFW-style pairs.txt (name i j = genuine, name1 i name2 j = impostor) over Name/Name_NNNN.jpg"
    crop = "lfw"

    def load(self, root: str | Path) -> Self:
        root = self._root(root)
        lines = [ln.split() for ln in _file(root, "pairs.txt", "pair list").read_text().splitlines() if ln.strip()]
        if lines and len(lines[0]) <= 2 and all(t.isdigit() for t in lines[0]):
            lines = lines[1:]  # header "folds pairs_per_fold"
        a, b, gen = [], [], []
        for n, t in enumerate(lines, 1):
            if len(t) == 3:
                t = [t[0], t[1], t[0], t[2]]
            if len(t) != 4:
                raise UserError(f"{root / 'pairs.txt'} line {n}: expected 'name i j' or 'name1 i name2 j'")
            a.append(root / t[0] / f"{t[0]}_{int(t[1]):04d}.jpg")
            b.append(root / t[2] / f"{t[2]}_{int(t[3]):04d}.jpg")
            gen.append(t[0] == t[2])
        _check_exist(root, a + b)
        self.pairs_a, self.pairs_b, self.genuine = a, b, np.array(gen, bool)
        return self


def _check_exist(root: Path, paths: list[Path]) -> None:
    missing = [p for p in dict.fromkeys(paths) if not p.is_file()]
    if missing:
        raise UserError(f"{root}: {len(missing)} image(s) named in the pair list are missing, e.g. {missing[0]}")


def read_pair_names(path: Path) -> list[tuple[str, str]]:
    """A SurvFace pair list: ``.mat`` (cell array N×2, needs scipy) or a CSV/TXT export, one pair per line."""
    if path.suffix.lower() == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError:
            raise UserError(
                f"{path}: reading .mat needs scipy (pip install scipy) or export the pairs to CSV"
            ) from None
        cells = next(v for k, v in loadmat(str(path)).items() if not k.startswith("__"))
        return [(str(np.ravel(a)[0]), str(np.ravel(b)[0])) for a, b, *_ in np.asarray(cells, dtype=object)]
    rows = [re.split(r"[,\s]+", ln.strip()) for ln in path.read_text().splitlines() if ln.strip()]
    return [(r[0], r[1]) for r in rows if len(r) >= 2]


@PROTOCOLS.register("survface-verification")
class SurvFaceVerification(PairProtocol):
    name = "survface-verification"
    description = (
        "QMUL-SurvFace Face_Verification_Test_Set: positive/negative pair lists over verification_images; "
        "TAR@FAR 0.3/0.1/0.01/0.001 and AUC"
    )

    def load(self, root: str | Path) -> Self:
        base = _subdir_or_self(self._root(root), "Face_Verification_Test_Set")
        images = _dir(base, "verification_images", "QMUL-SurvFace")
        lists = {}
        for kind in ("positive", "negative"):
            found = [base / f"{kind}_pairs_names{ext}" for ext in (".mat", ".csv", ".txt")]
            path = next((p for p in found if p.is_file()), None)
            if path is None:
                raise UserError(f"{base}: missing pair list '{kind}_pairs_names.mat' (or .csv/.txt)")
            lists[kind] = read_pair_names(path)
        pairs = lists["positive"] + lists["negative"]
        self.pairs_a = [images / x for x, _ in pairs]
        self.pairs_b = [images / y for _, y in pairs]
        _check_exist(base, self.pairs_a + self.pairs_b)
        self.genuine = np.r_[np.ones(len(lists["positive"]), bool), np.zeros(len(lists["negative"]), bool)]
        return self
