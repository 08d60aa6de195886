"""Training-step throughput: img/s, step time, peak memory, MFU, and whether data keeps up.

The data step is two parts, each timed with the device synchronised around it:
*fetch* (the batch onto the device) and *degrade* (the trainer's own
``random_vlr`` on the device). ``data="device"`` makes random images on the
device (fetch ≈ 0: the model's and the degradation's figure, not a disk's);
``data="loader"`` takes synthetic faces from a :class:`TrainData` on the host —
decoded once, made ahead by its read-ahead thread, pinned on CUDA — and copies
them over, as ``vlrface train`` does. In the trainer data and compute run one
after the other, so ``data_ms / step_ms`` (``data_share``) is the share of the
step the model spends waiting for data.

MFU = model FLOPs per image (forward counted by ``FlopCounterMode``, ×3 for
forward + backward) × img/s ÷ the device's peak dense bf16 rate. The peak is
a datasheet figure from :data:`PEAK_TFLOPS` (or ``peak_tflops``); a large
bf16 matmul is timed in the same run as a measured ceiling.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import DataConfig, OptimConfig, RIConfig, VLRConfig
from ..data.datasets import build_train_data
from ..data.degrade import make_ui, random_vlr
from ..errors import UserError
from ..models import HEADS, build_model
from ..models.heads.base import MarginSoftmax
from ..preprocess import DEFAULT
from ..train import distributed as D
from ..train.objective import Objective
from ..train.optim import build_optimizer
from ..train.partial_fc import PartialFC

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA datasheets.
PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H200": 989.4, "A100": 312.0}


@dataclass
class TrainBench:
    """The settings of one :func:`run` (the options of ``vlrface bench train``)."""

    model: str = "iresnet50"
    head: str = "arcface"
    ri: bool = True
    batch_size: int = 128  # per rank
    num_classes: int = 93_431  # MS1MV3's identities
    steps: int = 20
    warmup: int = 5
    amp: str = "bf16"  # none | bf16 | fp16 (fp16 uses a GradScaler)
    channels_last: bool = True
    compile: bool = False
    fused: bool = True
    partial_fc_rate: float = 1.0  # < 1, or a torchrun launch: PartialFC head
    ui_every: int = 50
    ui_size: int = 256
    device: str = "auto"
    peak_tflops: float | None = None
    data: str = "device"  # device: random images made there | loader: host TrainData, read ahead, copied over


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """The device's datasheet dense bf16 peak from :data:`PEAK_TFLOPS` (``override`` wins; None when unknown)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call takes, the device synchronised before and after."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matmul rate on random data (a ceiling for MFU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    dt = timed(lambda: [a @ b for _ in range(reps)], device) / reps
    return 2 * n**3 / dt / 1e12


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs one call of ``fn`` runs, as ``torch.utils.flop_counter.FlopCounterMode`` counts them."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _head(cfg: TrainBench, dim: int, info: D.DistInfo) -> MarginSoftmax | PartialFC:
    if cfg.partial_fc_rate >= 1 and not info.distributed:
        return HEADS.build(cfg.head, embedding_size=dim, num_classes=cfg.num_classes)
    count = D.shard_range(cfg.num_classes, info.world_size, info.rank)[1]
    return PartialFC(HEADS.build(cfg.head, embedding_size=dim, num_classes=count), cfg.num_classes, cfg.partial_fc_rate)


def run(cfg: TrainBench) -> dict[str, object]:
    """Run the benchmark; returns the figures (see module docstring)."""
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise UserError(f"--amp {cfg.amp!r}: choose none, bf16 or fp16")
    if cfg.data not in ("device", "loader"):
        raise UserError(f"--data {cfg.data!r}: choose device or loader")
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    info = D.init_distributed(device)
    device = D.local_device(device, info)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model({"backbone": cfg.model, "pam": cfg.ri, "prm": cfg.ri}).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    objective = Objective(
        _head(cfg, model.embedding_size, info), RIConfig(enabled=cfg.ri, ui_every=cfg.ui_every), model.embedding_size
    ).to(device)
    optimizer = build_optimizer(model, objective, OptimConfig(fused=cfg.fused and device.type == "cuda"))
    net = D.wrap_ddp(model, device, info)
    forward = torch.compile(net) if cfg.compile else net
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    vlr = VLRConfig()
    b = cfg.batch_size

    if cfg.data == "loader":  # the trainer's host data class: two batches of synthetic faces, decoded once
        ids = min(64, cfg.num_classes)
        src = build_train_data(DataConfig(kind="synth", num_identities=ids, images_per_identity=-(-2 * b // ids)), 0)
        host = src.batches(b, pin_memory=device.type == "cuda")

        def fetch() -> tuple[torch.Tensor, torch.Tensor]:
            images, labels = next(host)
            return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    else:

        def fetch() -> tuple[torch.Tensor, torch.Tensor]:
            return torch.rand(b, 3, 112, 112, device=device), torch.randint(cfg.num_classes, (b,), device=device)

    def degrade(images: torch.Tensor, step: int) -> torch.Tensor:
        x = DEFAULT.normalize(random_vlr(images, vlr, torch.Generator().manual_seed(step)))
        return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x

    def compute(x: torch.Tensor, labels: torch.Tensor) -> None:
        with autocast():
            out = forward(x)
        loss, _ = objective(out, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    ui = DEFAULT.normalize(make_ui(torch.rand(cfg.ui_size, 3, 112, 112, device=device), torch.Generator()))

    def refresh() -> None:
        with autocast():
            objective.refresh(model, ui)

    def one_step(step: int) -> tuple[tuple[float, float, float], list[torch.Tensor]]:
        """Fetch, degrade and compute one batch, each timed; returns the three times and the batch."""
        batch: list[torch.Tensor] = []
        ft = timed(lambda: batch.extend(fetch()), device)
        dt = timed(lambda: batch.append(degrade(batch[0], step)), device)
        if step == cfg.warmup:
            torch.cuda.reset_peak_memory_stats(device) if device.type == "cuda" else None
        ct = timed(lambda: compute(batch[2], batch[1]), device)
        return (ft, dt, ct), batch

    refresh_s = timed(refresh, device) if cfg.ri else 0.0
    fetch_t, degrade_t, compute_t = [], [], []
    for step in range(cfg.warmup + cfg.steps):
        (ft, dt, ct), batch = one_step(step)
        if step >= cfg.warmup:
            fetch_t.append(ft)
            degrade_t.append(dt)
            compute_t.append(ct)
    if cfg.ri:
        refresh_s = timed(refresh, device)  # warm now
    fetch_s, degrade_s, compute_s = (statistics.median(t) for t in (fetch_t, degrade_t, compute_t))
    data_s = fetch_s + degrade_s
    ui_s = refresh_s / max(cfg.ui_every, 1)
    step_s = data_s + compute_s + ui_s
    x1, y1 = batch[2][:2], batch[1][:2]

    def fwd_once() -> None:
        with autocast():
            objective(model(x1), y1)

    flops_img = 3 * count_flops(fwd_once) / 2
    peak = peak_tflops(device, cfg.peak_tflops)
    measured = matmul_tflops(device) if device.type == "cuda" else None
    ips = b / step_s
    achieved = flops_img * (b / compute_s) / 1e12
    return {
        **{k: v for k, v in asdict(cfg).items() if k not in ("device", "peak_tflops")},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "world_size": info.world_size,
        "img_per_s": round(ips, 1),
        "img_per_s_compute_only": round(b / compute_s, 1),
        "step_ms": round(step_s * 1e3, 2),
        "data_ms": round(data_s * 1e3, 2),
        "fetch_ms": round(fetch_s * 1e3, 2),
        "degrade_ms": round(degrade_s * 1e3, 2),
        "compute_ms": round(compute_s * 1e3, 2),
        "ui_refresh_ms_amortised": round(ui_s * 1e3, 3),
        "data_share": round(data_s / step_s, 3),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "gflops_per_img_fwd_bwd": round(flops_img / 1e9, 2),
        "peak_tflops_assumed": peak,
        "mfu": round(flops_img * ips / 1e12 / peak, 3) if peak else None,
        "mfu_compute_only": round(achieved / peak, 3) if peak else None,
        "matmul_tflops_measured": round(measured, 1) if measured else None,
    }
