"""Issue #6 comparison: SFace off the shelf vs SFace fine-tuned with ArcFace vs with RI.

    python benchmarks/lfw_sface.py prepare --lfw ../shared/data/lfw --att ../shared/data/att_faces --out .gpudata
    python benchmarks/lfw_sface.py run --data .gpudata --out runs/lfw-sface --seeds 0 1 2 [key=value ...]

``prepare`` writes what a GPU machine needs (it cannot see ../shared): the
lfw-vlr *training* people with ≥ 2 images as 112×112 ``lfw`` crops (JPEG q95,
``train/ID/*.jpg``), the lfw-vlr *test* set as lossless crops in the
``folders`` protocol layout (``lfw-test/gallery``, ``lfw-test/probe``: the
same gallery/probe split and crop as the ``lfw-vlr`` protocol, so its figures
equal ``--protocol lfw-vlr``), and ORL/AT&T as is. People with one image are
not in ``train/``: they add a class but no positive pair; they go to
``train-singles/``, which only the cross-resolution term reads (``--singles``,
``train.cross_res``; docs/sface.md). ``train+att/``
adds the 20 ORL/AT&T subjects that att-vlr allows for training (1–20, ``att``
crop) to the lfw-vlr training people (``run --train train+att``).

``run`` trains, per seed, the ArcFace baseline and the full RI model from
``configs/lfw-vlr-sface.yaml`` (same seed, steps and data), evaluates them,
off-the-shelf SFace and raw pixels on lfw-vlr and att-vlr at HR/16/12/8 px,
and writes ``results.json`` and ``results.md`` (mean ± std over seeds, and for
each RI variant its paired rank-1 difference to ArcFace with a 95 % bootstrap
interval over probes and seeds: ``rank1_hits`` keeps every probe's outcome).
``--only`` picks the models (default ``arcface,ri``; ``ri-predicted``,
``ri-branch`` and ``ri-paper`` are the issue-16 readings, docs/method.md).

``run --trunk K --variants V`` is the CPU recipe: the stem and the first K
blocks stay frozen and their output is computed once per training image for
V fixed copies (HR + V−1 random VLR), shared by every run; evaluation also
runs the trunk once per test image (``vlrface.train.trunk_cache``).
``--recipe lfw-vlr-sface-cpu --trunk 10 --variants 5 --singles --cache-dtype fp16``
is issue 16's recipe; ``cache`` builds its trunk cache alone and reports size and img/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from vlrface.checkpoint import load_model
from vlrface.config import Config, load_config
from vlrface.data.datasets import build_train_data
from vlrface.data.readers import ATT_TRAIN_SUBJECTS, lfw_vlr_split, read_att, read_image, read_image_folder, to_face
from vlrface.eval.embed import ImageSet, ModelEmbedder, RawPixelEmbedder
from vlrface.eval.metrics import embedding_probe_stats
from vlrface.eval.paired import paired_bootstrap
from vlrface.eval.protocols import PROTOCOLS
from vlrface.models import build_model
from vlrface.models.backbones.sface import SFACE_PREPROCESSING
from vlrface.models.ri import ri_distances
from vlrface.train.trainer import Trainer
from vlrface.train.trunk_cache import CachedTrunkTrainer, MemoTrunk, TrunkCache

SIZES = [None, 16, 12, 8]
# the CPU recipe's schedule (docs/sface.md): 300 steps × 64 on the cached trunk
OVERRIDES_CPU = [
    "train.steps=300",
    "train.batch_size=64",
    "train.ckpt_every=100",
    "train.log_every=20",
    "schedule.warmup_steps=30",
]
VARIANTS = {
    "arcface": ["model.pam=false", "model.prm=false", "ri.enabled=false"],
    "ri": ["model.pam=true", "model.prm=true", "ri.enabled=true"],
    # issue 16: the paper's readings (docs/method.md), each judged against ArcFace by the paired bootstrap
    "ri-predicted": ["model.pam=true", "model.prm=true", "ri.enabled=true", "ri.div_source=predicted"],
    "ri-branch": ["model.pam=true", "model.prm=true", "ri.enabled=true", "model.pam_mode=branch"],
    "ri-paper": [
        "model.pam=true",
        "model.prm=true",
        "ri.enabled=true",
        "ri.div_source=predicted",
        "model.pam_mode=branch",
    ],
}
DEFAULT_MODELS = ("arcface", "ri")
DEFAULT_RECIPE = "lfw-vlr-sface"
SINGLES = "train-singles"  # prepare's one-image training people (data.singles)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # trunk-cache storage


def write_face(path: Path, img, quality: int | None, crop: str = "lfw") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = cv2.cvtColor(to_face(img, crop), cv2.COLOR_RGB2GRAY)  # this LFW copy (and ORL) is greyscale
    cv2.imwrite(str(path), grey, [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else [])


def prepare(lfw: Path, att: Path, out: Path) -> None:
    train_names, _ = lfw_vlr_split(lfw)
    people = read_image_folder(lfw)
    by_name: dict[str, list[Path]] = {}
    for p, y in zip(people.paths, people.labels):
        by_name.setdefault(people.names[y], []).append(p)
    n = singles = 0
    for name in train_names:
        files = sorted(by_name[name])
        folder = out / ("train" if len(files) >= 2 else SINGLES)  # one-image people: data.singles only
        for p in files:
            write_face(folder / name / f"{p.stem}.jpg", read_image(p), 95)
        if len(files) >= 2:
            n += len(files)
        else:
            singles += 1
    proto = PROTOCOLS.build("lfw-vlr").load(lfw)
    for kind, paths, ids in (("gallery", proto.gallery, proto.gallery_ids), ("probe", proto.probes, proto.probe_ids)):
        for p, who in zip(paths, ids):
            write_face(out / "lfw-test" / kind / who / f"{p.stem}.png", read_image(p), None)
    shutil.copytree(att, out / "att", dirs_exist_ok=True)
    both = out / "train+att"
    shutil.rmtree(both, ignore_errors=True)  # rebuilt each time: no stale people, no dangling links
    both.mkdir()
    for person in (out / "train").iterdir():
        (both / person.name).symlink_to(Path("..") / "train" / person.name)
    orl = read_att(att, ATT_TRAIN_SUBJECTS)
    for p, y in zip(orl.paths, orl.labels):
        write_face(both / f"att-{orl.names[y]}" / f"{p.stem}.jpg", read_image(p), 95, crop="att")
    print(
        f"prepared {n} lfw-vlr training images (+ {len(orl.paths)} ORL/AT&T in train+att, "
        f"{singles} one-image people in {SINGLES}), "
        f"{len(proto.gallery)} gallery + {len(proto.probes)} probes, in {out}"
    )


def setting_key(setting: str) -> str:
    """Result keys as in results.json: the protocols' HR setting "test" is "hr", sizes stay "16px" …"""
    return "hr" if setting == "test" else setting


def evaluate(embed, data: Path) -> dict:
    sets = {
        "lfw-vlr": PROTOCOLS.build("folders").load(data / "lfw-test"),
        "att-vlr": PROTOCOLS.build("att-vlr").load(data / "att"),
    }
    out = {}
    for name, proto in sets.items():
        seen: dict = {}  # "gallery" or probe size → embeddings, to keep each probe's rank-1 hit (paired tests)

        def recording(images: ImageSet, proto=proto, seen=seen):
            seen["gallery" if images.paths == tuple(proto.gallery) else images.size] = e = embed(images)
            return e

        out[name] = {}
        for s, r in proto.run(recording, SIZES).items():
            key = setting_key(s)
            probes = seen[None if key == "hr" else int(key.removesuffix("px"))]
            stats = embedding_probe_stats(probes.emb, proto.probe_ids, seen["gallery"].emb, proto.gallery_ids)
            hits = (stats.rank == 1).astype(int)
            assert abs(hits.mean() - r["cmc"][1]) < 1e-9, "per-probe hits disagree with the protocol's rank-1"
            out[name][key] = {
                "rank1": r["cmc"][1],
                "tar@far=1e-2": r["verification"]["tar_at_far"][0.01],
                "rank1_hits": hits.tolist(),  # per probe, in the protocol's order: paired across models and seeds
            }
    return out


@dataclass
class Recipe:
    """What a fine-tune is trained from: the recipe config, the training folder and, for the CPU recipe,
    the frozen trunk (``trunk`` blocks, ``variants`` cached copies, stored as ``dtype``) and the singles."""

    name: str = DEFAULT_RECIPE
    train: str = "train"
    trunk: int = 0
    variants: int = 3
    singles: bool = False
    dtype: str = "bf16"

    def config(self, data: Path, out: Path, seed: int, switches: list[str], root: Path | None = None) -> Config:
        """The config of one fine-tune; ``root``: the training folder if not ``data/train`` (tune's fit set)."""
        singles = [f"data.singles={data / SINGLES}"] if self.singles else []
        cfg = load_config(
            self.name,
            [
                f"seed={seed}",
                f"out={out}",
                "data.kind=folder",
                f"data.root={root or data / self.train}",
                "eval.protocols=[]",
                *singles,
                *switches,
            ],
        )
        if not cfg.train.cross_res:  # a cache built with --singles also serves runs without the term
            cfg.data.singles = None
        return cfg

    def cache_file(self, out: Path) -> Path:
        """Named by everything that shapes the cache, so one --out cannot mix two."""
        parts = [str(self.trunk), str(self.variants)]
        parts += [p for p in (self.train, Path(self.name).stem, "singles" if self.singles else "", self.dtype)
                  if p and p not in ("train", DEFAULT_RECIPE, "bf16")]  # fmt: skip
        return out / f"trunk-cache-{'-'.join(parts)}.pt"

    def load_or_build_cache(self, data: Path, out: Path, cfg: Config, device: str) -> TrunkCache:
        """The stored cache, or a new one (hours of CPU: kept for reruns, `tune` and `ui-stats`)."""
        stored = self.cache_file(out)
        if stored.is_file():
            return TrunkCache.load(stored)
        sface = build_model({"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False})
        singles = build_train_data(replace(cfg.data, root=cfg.data.singles), cfg.seed) if self.singles else None
        cache = TrunkCache.build(
            sface.to(device),
            build_train_data(cfg.data, cfg.seed),
            cfg,
            self.trunk,
            self.variants,
            singles=singles,
            device=device,
            dtype=DTYPES[self.dtype],
        )
        cache.save(stored)
        return cache


def run(data: Path, out: Path, seeds: list[int], overrides: list[str], recipe: Recipe, models: tuple[str, ...]) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trunk = recipe.trunk
    results: dict = {
        "off-the-shelf": {},
        "raw-pixels": {},
        "times_s": {},
        "overrides": overrides,
        "recipe": asdict(recipe),
        "train": recipe.train,
        "trunk": trunk,
        "variants": recipe.variants if trunk else None,
    }
    memo: dict = {}  # frozen-trunk output per test batch, shared by every model

    def config(seed: int, variant: str):
        return recipe.config(data, out / f"{variant}-s{seed}", seed, [*VARIANTS[variant], *overrides])

    def embedder(model) -> ModelEmbedder:
        net = MemoTrunk(model, trunk, memo, DTYPES[recipe.dtype]) if trunk else model
        return ModelEmbedder(net, SFACE_PREPROCESSING, device=device, progress=False)

    sface = build_model({"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False}).to(device)
    cache = None
    if trunk:
        t0 = time.perf_counter()
        cache = recipe.load_or_build_cache(data, out, config(seeds[0], "ri"), device)
        results["times_s"]["trunk-cache"] = time.perf_counter() - t0
        results["cache_gib"] = (
            sum(t.numel() * t.element_size() for t in (cache.features, cache.singles) if t is not None) / 2**30
        )
        print(f"trunk cache: {tuple(cache.features.shape)} in {results['times_s']['trunk-cache']:.0f} s", flush=True)
    t0 = time.perf_counter()
    results["off-the-shelf"] = evaluate(embedder(sface), data)
    results["times_s"]["eval-off-the-shelf"] = time.perf_counter() - t0
    results["raw-pixels"] = evaluate(RawPixelEmbedder(), data)
    print("off-the-shelf", json.dumps(results["off-the-shelf"]), flush=True)
    for seed in seeds:
        for variant in models:
            cfg = config(seed, variant)
            t0 = time.perf_counter()
            trainer = CachedTrunkTrainer(cfg, cache, progress=False) if cache else Trainer(cfg, progress=False)
            trainer.fit()
            results["times_s"][f"{variant}-s{seed}"] = time.perf_counter() - t0
            model, _, _ = load_model(Path(cfg.out) / "model.pt", device)
            results.setdefault(variant, {})[seed] = evaluate(embedder(model), data)
            (out / "results.json").write_text(json.dumps(results, indent=1))
            print(variant, seed, json.dumps(results[variant][seed]), flush=True)
    (out / "results.md").write_text(table(results, seeds))


def build_cache(data: Path, out: Path, recipe: Recipe) -> dict:
    """Build (or find) the recipe's trunk cache in ``out``; report its size and how fast it was made."""
    t0 = time.perf_counter()
    stored = recipe.cache_file(out)
    existed = stored.is_file()
    cfg = recipe.config(data, out / "cache-config", 0, VARIANTS["ri"])
    cache = recipe.load_or_build_cache(data, out, cfg, "cuda" if torch.cuda.is_available() else "cpu")
    seconds = time.perf_counter() - t0
    images = cache.features.shape[1] + (0 if cache.singles is None else cache.singles.shape[1])
    report = {
        "file": str(stored),
        "features": list(cache.features.shape),
        "singles": None if cache.singles is None else list(cache.singles.shape),
        "dtype": str(cache.features.dtype),
        "gib": stored.stat().st_size / 2**30,
        "seconds": None if existed else seconds,
        "trunk_img_per_s": None if existed else images * cache.variants / seconds,
    }
    print(json.dumps(report), flush=True)
    return report


def tune(data: Path, out: Path, cache_file: Path, candidates: list[str], recipe: Recipe, val_people: int = 200) -> None:
    """Choose RI settings on held-out *training* people (never the test people).

    A seeded ``val_people`` of the lfw-vlr training people become a validation
    gallery (first image) and probes (the rest); the others are the fit set. The
    ArcFace baseline and each candidate (a ``key=value[,key=value]`` override
    set for the RI model; it may start with a model of :data:`VARIANTS`, as in
    ``ri-paper,ri.tau=1`` or ``arcface,train.cross_res=4``) are fine-tuned on the fit set
    (seed 0) and compared by validation rank-1 at 16/12/8 px. The fit set's trunk output
    is taken from the full cache that ``run --trunk`` saved (``cache_file``).
    """
    full = read_image_folder(data / "train")
    names = sorted(set(full.names))
    rng = np.random.default_rng(2026)
    val = set(rng.choice(names, val_people, replace=False).tolist())
    split = out / "split"
    shutil.rmtree(split, ignore_errors=True)  # links only: rebuilt each time, as prepare's train+att
    (split / "fit").mkdir(parents=True)
    for name in names:
        files = sorted((data / "train" / name).iterdir())
        if name in val:
            for kind, group in (("gallery", files[:1]), ("probe", files[1:])):
                (split / "val" / kind / name).mkdir(parents=True)
                for f in group:
                    (split / "val" / kind / name / f.name).symlink_to(f.resolve())
        else:
            (split / "fit" / name).symlink_to((data / "train" / name).resolve())
    full_row = {(p.parent.name, p.name): i for i, p in enumerate(full.paths)}
    fit = read_image_folder(split / "fit")
    rows = torch.tensor([full_row[(p.parent.name, p.name)] for p in fit.paths])
    cache = TrunkCache.load(cache_file).subset(rows)
    trunk = cache.start
    memo: dict = {}
    proto = PROTOCOLS.build("folders").load(split / "val")
    results: dict = {}

    def switches(candidate: str) -> tuple[str, list[str]]:
        first, *rest = candidate.split(",")
        return (first, rest) if first in VARIANTS else ("ri", candidate.split(","))

    runs = {"arcface": VARIANTS["arcface"]}
    for c in candidates:
        variant, extra = switches(c)
        runs[c if variant != "ri" else f"ri {c}"] = [*VARIANTS[variant], *extra]
    for label, sw in runs.items():
        run_dir = out / label.replace(" ", "_").replace("=", "").replace(",", "_")
        cpu = OVERRIDES_CPU if recipe.name == DEFAULT_RECIPE else []  # newer recipes carry their CPU schedule
        cfg = recipe.config(data, run_dir, 0, [*sw, *cpu], root=split / "fit")
        t0 = time.perf_counter()
        CachedTrunkTrainer(cfg, cache, progress=False).fit()
        model, _, _ = load_model(Path(cfg.out) / "model.pt")
        embed = ModelEmbedder(MemoTrunk(model, trunk, memo, cache.features.dtype), SFACE_PREPROCESSING, progress=False)
        res = proto.run(embed, SIZES)
        results[label] = {setting_key(s): r["cmc"][1] for s, r in res.items()}
        results[label]["mean_vlr"] = statistics.mean(results[label][k] for k in ("16px", "12px", "8px"))
        summary = json.loads((Path(cfg.out) / "summary.json").read_text())  # L_ID's shares, cross-res gap, img/s
        results[label]["train"] = {k: v["mean"] for k, v in summary.items() if isinstance(v, dict) and "mean" in v}
        results[label]["seconds"] = time.perf_counter() - t0
        print(label, json.dumps(results[label]), flush=True)
        (out / "tune.json").write_text(json.dumps(results, indent=1))


@torch.no_grad()
def ui_stats(
    data: Path, cache_file: Path, run_dir: Path, switches: list[str], train: str = "train", rows_every: int = 7
) -> dict:
    """Where the UIs' RI sits against the training faces' labelled RI, for a finished cached-trunk run.

    Rebuilds the run's trainer (``switches`` as given to ``run``/``tune``; it resumes ``last.pt``) and
    prints μ_UI, σ_UI, the PRM's and the label-free RI of the UIs, and, per cached variant (0 = HR),
    the labelled ξ of every ``rows_every``-th training image and the share L_ID would push.
    """
    if not (run_dir / "last.pt").is_file():
        raise SystemExit(f"{run_dir}: no last.pt (a finished run of `run` or `tune` is needed)")
    cache = TrunkCache.load(cache_file)
    cfg = load_config(
        "lfw-vlr-sface",
        ["seed=0", f"out={run_dir}", "data.kind=folder", f"data.root={data / train}", "eval.protocols=[]", *switches],
    )
    trainer = CachedTrunkTrainer(cfg, cache, progress=False)  # resumes last.pt
    if trainer.data.num_images != cache.features.shape[1]:
        raise SystemExit(f"{cache_file} was built from other training data than {data / train}")
    obj, top, dev = trainer.objective, trainer.top.eval(), trainer.device
    mu, sigma = float(obj.ui.mu), float(obj.ui.sigma)
    ui_out = top(cache.ui.to(dev).float())
    ui = obj.label_free_ri(ui_out.embedding.float(), obj.ui.next_centre(ui_out.embedding))
    out = {
        "step": trainer.step,
        "mu_ui": mu,
        "sigma_ui": sigma,
        "ui_ri_nearest": [float(ui.mean()), float(ui.std())],
    }  # sample stds
    if ui_out.quality is not None:
        out["ui_prm"] = [float(ui_out.quality.mean()), float(ui_out.quality.std())]
    rows = torch.arange(0, cache.features.shape[1], rows_every)
    labels = torch.from_numpy(trainer.data.labels[rows.numpy()]).to(dev)
    for v in range(cache.variants):
        o = top(cache.features[v, rows].to(dev).float())
        head_cos = obj.head(o.embedding, labels).cosine
        xi = obj.ri_form(*ri_distances(o.embedding, head_cos, labels, obj.ui.centre))
        out[f"variant{v}"] = {
            "xi": [float(xi.mean()), float(xi.std())],
            "pushed": float(((xi - mu) / sigma < cfg.ri.tau).float().mean()),
        }
    print(json.dumps(out, indent=1))
    return out


SHIP_RECIPE = "sface-vlr"  # src/vlrface/configs/sface-vlr.yaml: ArcFace, framing jitter, the CPU schedule
SHIP_TRUNK, SHIP_VARIANTS, SHIP_SEED = 11, 3, 0


def ship(data: Path, out: Path, weights: Path) -> dict:
    """Rebuild the shipped ``sface-vlr`` weights, seeded (docs/models.md).

    The trunk cache of the lfw-vlr *training* people (``train/``: no AT&T, no test person; every copy
    re-framed by the recipe's ``data.jitter``) is built once and kept in ``out``; the ArcFace fine-tune
    (seed 0) is skipped when ``out/arcface-s0/model.pt`` exists. The layers that differ from SFace go to
    ``weights`` (fp16 .npz + .sha256, with the recipe, seed and HEAD commit inside); its figures are
    measured by ``benchmarks/bench_pretrained.py figures`` on the model as loaded from that file.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = load_config(
        SHIP_RECIPE,
        [
            f"seed={SHIP_SEED}",
            f"out={out / f'arcface-s{SHIP_SEED}'}",
            "data.kind=folder",
            f"data.root={data / 'train'}",
        ],
    )
    times: dict[str, float] = {}
    model_file = Path(cfg.out) / "model.pt"
    if not model_file.is_file():
        t0 = time.perf_counter()
        stored = out / f"trunk-cache-{SHIP_TRUNK}-{SHIP_VARIANTS}-{SHIP_RECIPE}.pt"
        if stored.is_file():
            cache = TrunkCache.load(stored)
        else:
            sface = build_model({"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False})
            train_data = build_train_data(cfg.data, cfg.seed)
            cache = TrunkCache.build(
                sface.to(device), train_data, cfg, SHIP_TRUNK, SHIP_VARIANTS, seed=SHIP_SEED, device=device
            )
            cache.save(stored)
        times["trunk-cache"] = time.perf_counter() - t0
        print(f"trunk cache {tuple(cache.features.shape)}: {times['trunk-cache']:.0f} s", flush=True)
        t0 = time.perf_counter()
        CachedTrunkTrainer(cfg, cache, progress=False).fit()
        times["train"] = time.perf_counter() - t0
        print(f"trained in {times['train']:.0f} s", flush=True)
        del cache
    import subprocess

    from vlrface.models.pretrained import save_pretrained_weights

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    model, _, _ = load_model(model_file)
    save_pretrained_weights(model, weights, recipe=SHIP_RECIPE, commit=commit or "unknown", seed=str(SHIP_SEED))
    print(f"wrote {weights} ({weights.stat().st_size / 2**20:.1f} MiB)", flush=True)
    (out / "times.json").write_text(json.dumps(times, indent=1))
    return times


def merge(folders: list[Path], out: Path) -> None:
    """Combine per-seed runs (one process per seed, e.g. on one GPU) into one table."""
    merged: dict = {"times_s": {}}
    for f in folders:
        r = json.loads((f / "results.json").read_text())
        for k in ("off-the-shelf", "raw-pixels"):
            merged[k] = r[k]
        merged["times_s"].update(r["times_s"])
        for variant in VARIANTS:
            merged.setdefault(variant, {}).update({int(s): v for s, v in r.get(variant, {}).items()})
    seeds = sorted({s for v in VARIANTS for s in merged.get(v, {})})
    out.write_text(json.dumps(merged, indent=1))
    out.with_suffix(".md").write_text(table(merged, seeds))
    print(table(merged, seeds))


VLR_KEYS = ("16px", "12px", "8px")  # the "VLR mean" column: the mean over these sizes (equal probe counts)


def table(results: dict, seeds: list[int]) -> str:
    lines = [
        "| model | set | " + " | ".join("HR" if s is None else f"{s}px" for s in SIZES) + " | VLR mean |",
        "|---|---|" + "---|" * (len(SIZES) + 1),
    ]
    keys = ["hr" if s is None else f"{s}px" for s in SIZES]
    for model in ("raw-pixels", "off-the-shelf", *VARIANTS):
        if not results.get(model):  # a run with --only
            continue
        for set_name in ("lfw-vlr", "att-vlr"):
            cells = []
            for k in [*keys, "vlr"]:
                if model in ("raw-pixels", "off-the-shelf"):
                    cells.append(f"{_rank1(results[model][set_name], k):.3f}")
                    continue
                vals = [_rank1(results[model][s][set_name], k) for s in seeds if s in results[model]]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "–")
            lines.append(f"| {model} | {set_name} | " + " | ".join(cells) + " |")
    lines += paired_rows(results, seeds, keys)
    return "\n".join(lines) + "\n"


def _rank1(by_key: dict, key: str) -> float:
    return statistics.mean(by_key[k]["rank1"] for k in VLR_KEYS) if key == "vlr" else by_key[key]["rank1"]


def paired_rows(results: dict, seeds: list[int], keys: list[str]) -> list[str]:
    """Per RI variant: the paired rank-1 difference (variant − ArcFace) over the seeds both ran, with the
    95 % bootstrap interval over probes and seeds (``vlrface.eval.paired``); needs per-probe hits."""
    rows = []
    base = results.get("arcface", {})
    for model in VARIANTS:
        common = [s for s in seeds if s in base and s in results.get(model, {})]
        if model == "arcface" or not common:
            continue
        for set_name in ("lfw-vlr", "att-vlr"):
            cells = []
            for k in [*keys, "vlr"]:
                sizes = VLR_KEYS if k == "vlr" else (k,)  # the VLR mean: the sizes' probes side by side
                pair = [
                    [[h for z in sizes for h in results[m][s][set_name][z].get("rank1_hits") or [None]] for s in common]
                    for m in (model, "arcface")
                ]
                if any(None in row for side in pair for row in side):  # results from before hits were kept
                    cells.append("–")
                    continue
                cells.append(str(paired_bootstrap(np.array(pair[0]), np.array(pair[1]))))
            rows.append(f"| {model} − arcface ({len(common)} seeds) | {set_name} | " + " | ".join(cells) + " |")
    return rows


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help="recipe config (configs/NAME.yaml), e.g. lfw-vlr-sface-cpu")
    p.add_argument("--train", default="train", help="training folder under --data: train, or train+att")
    p.add_argument("--trunk", type=int, default=0, help="freeze the stem + first K blocks and cache their output (CPU)")
    p.add_argument("--variants", type=int, default=3, help="cached copies per training image: HR + V−1 VLR")
    p.add_argument("--singles", action="store_true", help=f"also cache --data/{SINGLES} (data.singles)")
    p.add_argument("--cache-dtype", choices=tuple(DTYPES), default="bf16", help="trunk-cache storage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--lfw", type=Path, required=True)
    p.add_argument("--att", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_recipe_options(r)
    r.add_argument(
        "--only",
        default=",".join(DEFAULT_MODELS),
        help=f"models to fine-tune, comma-separated, from {','.join(VARIANTS)}",
    )
    r.add_argument("overrides", nargs="*")
    t = sub.add_parser("tune")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--cache", type=Path, required=True, help="the trunk cache `run --trunk` saved in its --out")
    t.add_argument("--recipe", default=DEFAULT_RECIPE, help="the recipe config the cache was built for")
    t.add_argument("--singles", action="store_true", help=f"the cache holds {SINGLES}: use them (data.singles)")
    t.add_argument(
        "candidates", nargs="+", help="RI override sets, e.g. ri.beta=0.1 ri.beta=0.01,ri.tau=1 ri-paper,ri.tau=1"
    )
    u = sub.add_parser("ui-stats", help="the UIs' RI against the training faces' (docs/sface.md)")
    u.add_argument("--data", type=Path, required=True)
    u.add_argument("--cache", type=Path, required=True)
    u.add_argument("--run", type=Path, required=True, help="a fine-tune folder holding last.pt")
    u.add_argument("--train", default="train")
    u.add_argument("switches", nargs="*", help="the run's overrides, e.g. model.pam=true ri.ui_stats=prm ...")
    sh = sub.add_parser("ship", help="rebuild the shipped sface-vlr weights (docs/models.md)")
    sh.add_argument("--data", type=Path, required=True)
    sh.add_argument("--out", type=Path, required=True)
    sh.add_argument("--weights", type=Path, default=Path("src/vlrface/models/weights/sface_vlr.npz"))
    c = sub.add_parser("cache", help="build a recipe's trunk cache; report its size and img/s")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    add_recipe_options(c)
    m = sub.add_parser("merge")
    m.add_argument("folders", type=Path, nargs="+")
    m.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.lfw, a.att, a.out)
    elif a.cmd == "tune":
        a.out.mkdir(parents=True, exist_ok=True)
        tune(a.data, a.out, a.cache, a.candidates, Recipe(a.recipe, singles=a.singles))
    elif a.cmd == "ui-stats":
        ui_stats(a.data, a.cache, a.run, a.switches, a.train)
    elif a.cmd == "ship":
        a.out.mkdir(parents=True, exist_ok=True)
        ship(a.data, a.out, a.weights)
    elif a.cmd == "cache":
        a.out.mkdir(parents=True, exist_ok=True)
        if not a.trunk:
            ap.error("cache: give --trunk K (the blocks to freeze and cache)")
        build_cache(a.data, a.out, Recipe(a.recipe, a.train, a.trunk, a.variants, a.singles, a.cache_dtype))
    elif a.cmd == "merge":
        merge(a.folders, a.out)
    else:
        a.out.mkdir(parents=True, exist_ok=True)
        only = tuple(a.only.split(","))
        if not set(only) <= set(VARIANTS):
            ap.error(f"--only: choose from {','.join(VARIANTS)}")
        recipe = Recipe(a.recipe, a.train, a.trunk, a.variants, a.singles, a.cache_dtype)
        run(a.data, a.out, a.seeds, a.overrides, recipe, only)


if __name__ == "__main__":
    main()
