"""``vlrface ablate``: which parts of the RI method help, measured over seeds.

Per dataset of the plan: one HR pre-training, shared by every run; then per
variant × seed one fine-tune from it with identical steps and data (the
fine-tunes train on the pre-training's people, so ``model.init_head=checkpoint``
keeps its class centres); then evaluation at the plan's probe sizes on the
dataset's eval sets with the demo's metrics (:func:`vlrface.eval.probe_sets.evaluate`).

The training images are built once per dataset (with ``data_seed``) and shared:
a run's seed changes what is random in fine-tuning (new modules' initial
weights, dropout, which images are degraded and how), not the people.

Each run writes ``result.json`` atomically when it is done, so a rerun skips
finished runs and an interrupted one starts again. ``summary.json`` and
``summary.md`` hold mean ± std over seeds, with raw pixels and the shared
pre-training (no fine-tune) as reference rows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_model
from .config import Config, HeadConfig, build_section, load_config, parse_overrides, read_mapping
from .data.datasets import TrainData, build_train_data
from .errors import UserError
from .eval.probe_sets import (
    ERC_REJECT,
    HELD_OUT_OFFSET,
    ProbeSet,
    evaluate,
    model_embedder,
    protocol_probe_set,
    raw_pixel_embedder,
    synthetic_probe_set,
)
from .eval.protocols import PROTOCOLS
from .serve.gallery import atomic_write
from .train.trainer import Trainer

SYNTHETIC = "synthetic"  # eval set: held-out synthetic identities (the demo's)
RAW = "raw-pixels"
PRETRAINED = "pre-trained (HR only)"
MAIN_METRICS = ("rank1", "tar@far=1e-2")
QUALITY_METRICS = (f"fnmr@reject={ERC_REJECT}|ri", f"fnmr@reject={ERC_REJECT}|norm")


@dataclass
class SyntheticEval:
    """Held-out synthetic identities (never trained on): HR gallery image, probes degraded per size."""

    identities: int = 60
    probes_per_identity: int = 5
    seed: int = 0
    offset: int = HELD_OUT_OFFSET


@dataclass
class DatasetPlan:
    recipe: str  # a training recipe: path, or the name of a shipped one
    eval: list[str]  # "synthetic" and/or gallery/probe protocol names
    overrides: list[str] = field(default_factory=list)  # every stage
    pretrain: list[str] = field(default_factory=list)  # the HR pre-training stage
    finetune: list[str] = field(default_factory=list)  # every fine-tune, before the variant's
    variants: list[str] | None = None  # None = all of the plan's
    sizes: list[int | None] | None = None  # probe sizes; None = the plan's
    data_seed: int = 0  # pre-training seed; its training images are every run's


@dataclass
class AblationPlan:
    variants: dict[str, list[str]]  # name → overrides
    datasets: dict[str, Any]  # name → DatasetPlan
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sizes: list[int | None] = field(default_factory=lambda: [16])  # probe sizes (null = HR)
    data: dict[str, str] = field(default_factory=dict)  # protocol → folder
    synthetic: SyntheticEval = field(default_factory=SyntheticEval)


def load_plan(
    path: str | Path,
    seeds: list[int] | None = None,
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
) -> AblationPlan:
    """Read and check a plan (and narrow it to ``seeds``/``datasets``/``variants``) before any training."""
    raw = read_mapping(path, "an ablation plan must be a mapping (variants, datasets, seeds …)")
    plan: AblationPlan = build_section(AblationPlan, raw)
    plan.datasets = {
        name: build_section(DatasetPlan, d if isinstance(d, dict) else {"recipe": d}, f"datasets.{name}.")
        for name, d in plan.datasets.items()
    }
    for name, ov in plan.variants.items():
        if not isinstance(ov, list) or not all(isinstance(o, str) for o in ov):
            raise UserError(f"variant {name}: give a list of key=value overrides")
        bad = [o for o in ov if o.startswith("data.") and not o.startswith("data.vlr.")]
        if bad:
            raise UserError(
                f"variant {name}: {bad[0]} — variants share their dataset's images; only data.vlr.* may vary"
            )
    if seeds:
        plan.seeds = list(seeds)
    for what, chosen, known in (("dataset", datasets, plan.datasets), ("variant", variants, plan.variants)):
        unknown = sorted(set(chosen or []) - set(known))
        if unknown:
            raise UserError(f"unknown {what} {unknown[0]!r}; the plan has {', '.join(known)}")
    if datasets:
        plan.datasets = {k: v for k, v in plan.datasets.items() if k in datasets}
    for name, ds in plan.datasets.items():
        if ds.variants is None:
            ds.variants = list(plan.variants)
        unknown = sorted(set(ds.variants) - set(plan.variants))
        if unknown:
            raise UserError(f"dataset {name}: unknown variant {unknown[0]!r}")
        if variants:
            ds.variants = [v for v in ds.variants if v in variants]
        for e in ds.eval:
            if e == SYNTHETIC:
                continue
            if e not in PROTOCOLS:
                raise UserError(
                    f"dataset {name}: eval {e!r} is neither 'synthetic' nor a protocol ({', '.join(PROTOCOLS)})"
                )
            if e not in plan.data:
                raise UserError(f"dataset {name}: eval {e} needs its folder in the plan's data ({e}: DIR)")
        for v in ds.variants:  # every config is valid before the first step
            run_config(plan, name, Path("."), v, plan.seeds[0])
    return plan


def with_overrides(recipe: str, overrides: list[str]) -> Config:
    """``load_config``, except that naming another head starts from that head's own defaults.

    (Overrides merge mappings, so ``head.kwargs`` of the recipe's head would
    otherwise reach a head that has no such arguments.)
    """
    head = [o for o in overrides if o.startswith("head.")]
    if not any(o.startswith("head.name=") for o in head):
        return load_config(recipe, overrides)
    cfg = load_config(recipe, [o for o in overrides if not o.startswith("head.")])
    return dataclasses.replace(cfg, head=build_section(HeadConfig, parse_overrides(head)["head"], "head."))


def pretrain_config(ds: DatasetPlan, out: Path) -> Config:
    return load_config(
        ds.recipe, [*ds.overrides, *ds.pretrain, f"seed={ds.data_seed}", f"out={out}", "eval.protocols=[]"]
    )


def run_config(plan: AblationPlan, dataset: str, out: Path, variant: str, seed: int) -> Config:
    ds = plan.datasets[dataset]
    return with_overrides(
        ds.recipe,
        [
            *ds.overrides,
            *ds.finetune,
            *plan.variants[variant],
            f"seed={seed}",
            f"out={run_dir(out, dataset, variant, seed)}",
            "eval.protocols=[]",
            f"model.init={out / dataset / 'pretrain' / 'model.pt'}",
            "model.init_head=checkpoint",
        ],
    )


def run_dir(out: Path, dataset: str, variant: str, seed: int) -> Path:
    return out / dataset / variant / f"seed{seed}"


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def _without_curves(results: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {s: {m: v for m, v in r.items() if m != "erc"} for s, r in by_size.items()} for k, by_size in results.items()
    }


class Ablation:
    """Runs a plan into ``out``; probe sets and training data are loaded once and shared."""

    def __init__(self, plan: AblationPlan, out: Path, log: Callable[[str], None] = print) -> None:
        self.plan, self.out, self.log = plan, Path(out), log
        self._probe_sets: dict[str, ProbeSet] = {}

    def probe_set(self, name: str) -> ProbeSet:
        if name not in self._probe_sets:
            s = self.plan.synthetic
            self._probe_sets[name] = (
                synthetic_probe_set(s.seed, s.identities, s.probes_per_identity, s.offset)
                if name == SYNTHETIC
                else protocol_probe_set(name, Path(self.plan.data[name]))
            )
        return self._probe_sets[name]

    def evaluate(self, embed, ds: DatasetPlan) -> dict[str, Any]:
        sizes = tuple(self.plan.sizes if ds.sizes is None else ds.sizes)
        return _without_curves({e: evaluate(embed, self.probe_set(e), sizes) for e in ds.eval})

    def pretrain(self, dataset: str, data: TrainData) -> Path:
        cfg = pretrain_config(self.plan.datasets[dataset], self.out / dataset / "pretrain")
        path = Path(cfg.out) / "model.pt"
        if not path.is_file():
            t0 = time.perf_counter()
            Trainer(cfg, data=data, progress=False).fit()
            self.log(f"{dataset} pretrain: {cfg.train.steps} steps in {time.perf_counter() - t0:.0f} s")
        return path

    def run(self) -> dict[str, Any]:
        """Every dataset's pre-training and runs (finished ones skipped), then the summary."""
        plan = self.plan
        total = sum(len(ds.variants) for ds in plan.datasets.values()) * len(plan.seeds)
        i = 0
        for dataset, ds in plan.datasets.items():
            data: TrainData | None = None  # built (and pre-trained on) only if a run is left to do
            for variant in ds.variants:
                for seed in plan.seeds:
                    i += 1
                    if (run_dir(self.out, dataset, variant, seed) / "result.json").is_file():
                        self.log(f"[{i}/{total}] {dataset} {variant} seed {seed}: done before, skipped")
                        continue
                    if data is None:
                        data = build_train_data(pretrain_config(ds, self.out).data, ds.data_seed)
                        self.pretrain(dataset, data)
                    self.log(f"[{i}/{total}] " + self.fine_tune(dataset, variant, seed, data))
        return self.summarise()

    def fine_tune(self, dataset: str, variant: str, seed: int, data: TrainData) -> str:
        """Train, evaluate and record one run; returns its progress line."""
        cfg = run_config(self.plan, dataset, self.out, variant, seed)
        t0, c0 = time.perf_counter(), time.process_time()
        Trainer(cfg, data=data, progress=False).fit()
        model, pre, _ = load_model(Path(cfg.out) / "model.pt")
        results = self.evaluate(model_embedder(model, pre), self.plan.datasets[dataset])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        _write_json(
            Path(cfg.out) / "result.json",
            {
                "dataset": dataset,
                "variant": variant,
                "seed": seed,
                "overrides": self.plan.variants[variant],
                "steps": cfg.train.steps,
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu, 1),
                "results": results,
            },
        )
        (Path(cfg.out) / "last.pt").unlink(missing_ok=True)  # optimiser state: only needed to resume
        first = next(iter(results.values()))
        figures = "  ".join(f"{size} rank-1 {r['rank1']:.3f}" for size, r in first.items())
        return f"{dataset} {variant} seed {seed}: {seconds:.0f} s, {next(iter(results))} {figures}"

    def summarise(self) -> dict[str, Any]:
        """Mean ± std over seeds of every finished run (and the reference rows); writes summary.json and summary.md."""
        summary: dict[str, Any] = {"seeds": self.plan.seeds, "datasets": {}}
        for dataset, ds in self.plan.datasets.items():
            rows: dict[str, Any] = {RAW: aggregate([self.evaluate(raw_pixel_embedder, ds)])}
            pretrained = self.out / dataset / "pretrain" / "model.pt"
            if pretrained.is_file():  # where every fine-tune starts: what fine-tuning itself changed
                model, pre, _ = load_model(pretrained)
                rows[PRETRAINED] = aggregate([self.evaluate(model_embedder(model, pre), ds)])
            for variant in ds.variants:
                found = [run_dir(self.out, dataset, variant, s) / "result.json" for s in self.plan.seeds]
                results = [json.loads(p.read_text())["results"] for p in found if p.is_file()]
                if results:
                    rows[variant] = aggregate(results)
            summary["datasets"][dataset] = {"eval": ds.eval, "rows": rows}
        _write_json(self.out / "summary.json", summary)
        (self.out / "summary.md").write_text(markdown(summary))
        return summary


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """``{eval: {size: {metric: {mean, std, n}}}}`` over runs; std is the sample std (0 for one run)."""
    out: dict[str, Any] = {}
    for e, by_size in results[0].items():
        out[e] = {}
        for size, metrics in by_size.items():
            out[e][size] = {}
            for m in metrics:
                vals = np.array([r[e][size][m] for r in results], dtype=float)
                std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                out[e][size][m] = {"mean": float(vals.mean()), "std": std, "n": len(vals)}
    return out


def _cell(stat: dict[str, Any] | None) -> str:
    if stat is None or math.isnan(stat["mean"]):
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat["n"] > 1 else f"{stat['mean']:.3f}"


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# vlrface ablation",
        "",
        f"Mean ± sample std over seeds {summary['seeds']} (n per cell as run); the reference rows "
        "(raw pixels, the shared pre-training before any fine-tune) are deterministic.",
        "",
    ]
    for dataset, d in summary["datasets"].items():
        rows = d["rows"]
        cols = [(e, s) for e in d["eval"] for s in rows[RAW][e]]
        head = [f"{e} {s} {m}" for e, s in cols for m in ("rank-1", "TAR@FAR=1e-2")]
        lines += [
            f"## trained on {dataset}",
            "",
            "| variant | n | " + " | ".join(head) + " |",
            "|---" * (len(head) + 2) + "|",
        ]
        for variant, r in rows.items():
            n = next(iter(next(iter(r.values())).values()))["rank1"]["n"]
            cells = [_cell(r[e][s].get(m)) for e, s in cols for m in MAIN_METRICS]
            lines.append(f"| {variant} | {n} | " + " | ".join(cells) + " |")
        quality = [(v, r) for v, r in rows.items() if QUALITY_METRICS[0] in next(iter(next(iter(r.values())).values()))]
        if quality:
            qhead = [f"{e} {s} {q}" for e, s in cols for q in ("RI", "norm")]
            lines += [
                "",
                f"FNMR at FMR = 1e-2 after rejecting {ERC_REJECT:.0%} of pairs by quality (lower is better):",
                "",
                "| variant | " + " | ".join(qhead) + " |",
                "|---" * (len(qhead) + 1) + "|",
            ]
            for variant, r in quality:
                lines.append(
                    f"| {variant} | "
                    + " | ".join(_cell(r[e][s].get(m)) for e, s in cols for m in QUALITY_METRICS)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)
