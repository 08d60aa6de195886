"""All GPU training figures of BENCHMARKS.md in one run (one device lease).

    python benchmarks/gpu_bench.py --out DIR [--arcface-torch PATH]
    torchrun --nproc_per_node=1 benchmarks/gpu_bench.py --out DIR --only ddp
    python benchmarks/gpu_bench.py --out DIR --only compile
    python benchmarks/gpu_bench.py --out DIR --only data     # ~2 min: the data path alone

Each case is ``vlrface.bench.train.run`` — the same function as
``vlrface bench train`` with the matching flags. ``--arcface-torch`` points at
insightface's ``recognition/arcface_torch`` folder (NOT part of this repo):
its ``iresnet50`` + ``CombinedMarginLoss`` + ``PartialFC_V2`` run with its
recipe (fp16 GradScaler, SGD, grad-clip 5) next to ours in the same process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

from vlrface.bench.train import TrainBench, matmul_tflops, run, timed
from vlrface.models import HEADS, build_model
from vlrface.train import distributed as D

CLASSES = 93_431  # MS1MV3


def main_cases(out: Path) -> list[dict]:
    cases = [
        TrainBench(model="iresnet50", ri=False, batch_size=512),
        TrainBench(model="iresnet50", ri=True, batch_size=512),
        TrainBench(model="iresnet50", ri=False, batch_size=128),
        TrainBench(model="iresnet50", ri=True, batch_size=128),
        TrainBench(model="mobilefacenet", ri=False, batch_size=512),
        TrainBench(model="mobilefacenet", ri=True, batch_size=512),
        TrainBench(model="iresnet50", ri=False, batch_size=512, channels_last=False, fused=False),
    ]
    rows = []
    for c in cases:
        rows.append(run(c))
        print(json.dumps(rows[-1]), flush=True)
        (out / "train.json").write_text(json.dumps(rows, indent=1))
        torch.cuda.empty_cache()
    return rows


def insightface_recipe(root: str, batch: int, steps: int = 20, warmup: int = 5) -> dict:
    """arcface_torch's own r50 + margin + PartialFC_V2 (rate 1), fp16 GradScaler, SGD, clip 5."""
    sys.path.insert(0, root)
    from backbones.iresnet import iresnet50  # insightface's, outside this repo
    from losses import CombinedMarginLoss
    from partial_fc_v2 import PartialFC_V2

    dev = torch.device("cuda")
    torch.manual_seed(0)
    backbone = iresnet50(dropout=0.0, fp16=True, num_features=512).to(dev).train()
    pfc = PartialFC_V2(CombinedMarginLoss(64, 1.0, 0.5, 0.0, 0), 512, CLASSES, 1.0, False).to(dev).train()
    opt = torch.optim.SGD(
        [{"params": backbone.parameters()}, {"params": pfc.parameters()}], lr=0.1, momentum=0.9, weight_decay=5e-4
    )
    amp = torch.amp.GradScaler("cuda", growth_interval=100)
    img = torch.rand(batch, 3, 112, 112, device=dev) * 2 - 1  # its SyntheticDataLoader: one fixed batch
    labels = torch.randint(CLASSES, (batch,), device=dev)

    def step() -> None:
        loss = pfc(backbone(img), labels.clone())
        amp.scale(loss).backward()
        amp.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5)
        amp.step(opt)
        amp.update()
        opt.zero_grad()

    return _time_steps("insightface arcface_torch r50 fp16 SGD", step, batch, steps, warmup)


def our_recipe(batch: int, *, amp: str, channels_last: bool, fused: bool, steps: int = 20, warmup: int = 5) -> dict:
    """vlrface's IResNet-50 + ArcFace head in the same loop (same fixed batch, same clip)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model({"backbone": "iresnet50", "pam": False, "prm": False}).to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    head = HEADS.build("arcface", embedding_size=512, num_classes=CLASSES).to(dev)
    opt = torch.optim.SGD(
        [{"params": model.parameters()}, {"params": head.parameters()}],
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        fused=fused,
    )
    scaler = torch.amp.GradScaler("cuda", growth_interval=100, enabled=amp == "fp16")
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    img = torch.rand(batch, 3, 112, 112, device=dev) * 2 - 1
    if channels_last:
        img = img.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(CLASSES, (batch,), device=dev)

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype):
            emb = model(img).embedding
        loss = head(emb, labels).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()

    name = f"vlrface r50 {amp} SGD{' fused' if fused else ''}{' channels_last' if channels_last else ''}"
    return _time_steps(name, step, batch, steps, warmup)


def _time_steps(name: str, step, batch: int, steps: int, warmup: int) -> dict:
    dev = torch.device("cuda")
    for _ in range(warmup):
        step()
    torch.cuda.reset_peak_memory_stats()
    t = [timed(step, dev) for _ in range(steps)]
    s = statistics.median(t)
    return {
        "recipe": name,
        "batch_size": batch,
        "step_ms": round(s * 1e3, 2),
        "img_per_s": round(batch / s, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def side_by_side(root: str, out: Path) -> list[dict]:
    if not torch.distributed.is_initialized():  # PartialFC_V2 insists on a process group
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.distributed.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    rows = []
    for batch in (128, 512):
        for fn in (
            partial(insightface_recipe, root, batch),
            partial(our_recipe, batch, amp="fp16", channels_last=False, fused=False),
            partial(our_recipe, batch, amp="bf16", channels_last=True, fused=True),
        ):
            rows.append(fn())
            print(json.dumps(rows[-1]), flush=True)
            (out / "side_by_side.json").write_text(json.dumps(rows, indent=1))
            torch.cuda.empty_cache()
    torch.distributed.destroy_process_group()  # the later cases must not see a process group
    return rows


def compile_cases(out: Path) -> list[dict]:
    rows = []
    for ri in (False, True):
        t = time.perf_counter()
        rows.append(run(TrainBench(model="iresnet50", ri=ri, batch_size=512, compile=True)))
        rows[-1]["wall_s_incl_compile"] = round(time.perf_counter() - t, 1)
        print(json.dumps(rows[-1]), flush=True)
        (out / "compile.json").write_text(json.dumps(rows, indent=1))
    return rows


def data_cases(out: Path, old: str) -> list[dict]:
    """Degradation per batch, old per-group code (``old``: git rev or saved file) vs batched matrices,
    then the data share of a step with on-device and host-loader data."""
    from bench_degrade import compare, old_module  # benchmarks/, next to this script

    new = importlib.import_module("vlrface.data.degrade")  # the package re-exports a function of that name
    rows = compare({"old": old_module(old), "new": new}, torch.device("cuda"), reps=20)
    for c in (
        TrainBench(model="iresnet50", ri=False, batch_size=512),
        TrainBench(model="iresnet50", ri=False, batch_size=512, data="loader"),
        TrainBench(model="iresnet50", ri=True, batch_size=128, data="loader"),
        TrainBench(model="mobilefacenet", ri=False, batch_size=512, data="loader"),
    ):
        rows.append(run(c))
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    (out / "data.json").write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arcface-torch", default=None)
    p.add_argument("--old-degrade", default="7bf9499", help="--only data: git rev or saved file of the old degrade.py")
    p.add_argument(
        "--only",
        choices=["main", "ddp", "compile", "data"],
        default="main",
        help="main: eager cases + side-by-side; ddp: under torchrun; compile: torch.compile cases; "
        "data: degradation old vs new and the data share with the host loader",
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.only == "compile":
        compile_cases(a.out)
        return
    if a.only == "data":
        data_cases(a.out, a.old_degrade)
        return
    if a.only == "ddp":
        rows = [run(TrainBench(model="iresnet50", ri=False, batch_size=512, partial_fc_rate=r)) for r in (1.0, 0.3)]
        if D.current().is_main:
            (a.out / "ddp.json").write_text(json.dumps(rows, indent=1))
            print(json.dumps(rows))
        return
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "matmul_bf16_tflops": round(matmul_tflops(torch.device("cuda")), 1),
            }
        ),
        flush=True,
    )
    main_cases(a.out)
    if a.arcface_torch and os.path.isdir(a.arcface_torch):
        side_by_side(a.arcface_torch, a.out)


if __name__ == "__main__":
    main()
