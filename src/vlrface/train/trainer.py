"""The training loop, split into small parts: build, step, checkpoint, loop.

Exact resume: every source of randomness is a function of ``(seed, step)``:
the data order (``TrainData.batches``), the VLR degradation generator and the
global torch RNG (dropout), which is re-seeded at each step. Weights, head,
UI state and optimiser moments are checkpointed atomically, so a run
interrupted at step k and resumed ends with the same weights as one that
never stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ..checkpoint import atomic_save, load_checkpoint, make_checkpoint, resolve_device
from ..config import Config, config_from_dict
from ..data.datasets import TrainData, build_train_data
from ..data.degrade import random_jitter, random_vlr_rows
from ..errors import UserError, brief
from ..models import HEADS, FaceModel, build_model
from ..models.face_model import FaceOutput
from ..preprocess import DEFAULT, Preprocessing
from ..safeload import load_tensors
from .distributed import init_distributed, local_batch, local_device, shard_range, wrap_ddp
from .imprint import class_means, imprint
from .objective import Objective
from .optim import build_optimizer, lr_factor, set_lr
from .partial_fc import PartialFC

Evaluator = Callable[[FaceModel, Preprocessing], dict[str, Any]]
# per-step logs that summary.json averages: whom L_ID pushes, against which UI statistics; the
# cross-resolution gap (train.cross_res); training speed
SUMMARY_KEYS = ("pushed", "pushed_hr", "pushed_vlr", "mu_ui", "sigma_ui", "xi_hat", "id", "cross_res", "img_per_s")


def step_seed(seed: int, step: int) -> int:
    """A distinct, reproducible seed for each (run seed, step)."""
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**63 - 1)


class NonFiniteGuard:
    """Skip steps whose loss is NaN/inf; give up after ``patience`` in a row."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.in_a_row = 0
        self.total = 0

    def check(self, loss: torch.Tensor, step: int) -> bool:
        if torch.isfinite(loss).item():
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.patience:
            raise UserError(
                f"training diverged: {self.in_a_row} non-finite losses in a row at step {step} "
                f"({self.total} skipped in all); lower optim.lr or use train.amp=bf16"
            )
        return False


class Trainer:
    """Builds everything from a :class:`Config` and runs (or resumes) training."""

    cross_resolution = False  # whether train.cross_res / data.singles can work (their targets need a cache)

    def __init__(
        self,
        cfg: Config,
        *,
        data: TrainData | None = None,
        evaluator: Evaluator | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg = cfg
        if (cfg.train.cross_res or cfg.data.singles) and not self.cross_resolution:
            raise UserError(
                "train.cross_res and data.singles need the cached-trunk trainer (its cache holds the HR "
                "targets): benchmarks/lfw_sface.py run --trunk K, or set train.cross_res=0 data.singles=null"
            )
        # [distributed] torchrun → process group, one GPU per rank (no-op for a single process)
        device = resolve_device(cfg.train.device, "train.device")
        self.dist = init_distributed(device)
        self.device = local_device(device, self.dist)
        self.out = Path(cfg.out)
        blocking = next((p for p in (self.out, *self.out.parents) if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # found now, not when the first checkpoint is saved
            raise UserError(f"out={cfg.out}: {blocking} is a file, not a folder")
        if evaluator is None and cfg.eval.protocols:
            from ..eval.run import training_evaluator

            evaluator = training_evaluator(cfg.eval.protocols, cfg.eval.data, cfg.eval.probe_sizes, self.device)
        self.evaluator = evaluator
        self.show_progress = progress
        torch.manual_seed(cfg.seed)
        self.data = data if data is not None else build_train_data(cfg.data, cfg.seed)
        self.model = build_model(cfg.to_dict()["model"]).to(self.device)
        self.preprocessing: Preprocessing = getattr(self.model.backbone, "preprocessing", DEFAULT)
        # [distributed] PartialFC: this rank's shard of the class centres, sampled per step
        partial = cfg.train.partial_fc_rate < 1 or self.dist.world_size > 1
        shard = shard_range(self.data.num_classes, self.dist.world_size, self.dist.rank)
        head = HEADS.build(
            cfg.head.name,
            embedding_size=self.model.embedding_size,
            num_classes=shard[1] if partial else self.data.num_classes,
            **cfg.head.kwargs,
        )
        if partial:
            head = PartialFC(head, self.data.num_classes, cfg.train.partial_fc_rate)
        has_prm = self.model.prm is not None
        self.objective = Objective(head, cfg.ri, self.model.embedding_size, prm=has_prm).to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
        self.optimizer = build_optimizer(self.model, self.objective, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.guard = NonFiniteGuard(cfg.train.nan_patience)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        ddp = wrap_ddp(self.model, self.device, self.dist)  # [distributed]
        self.forward = torch.compile(ddp) if cfg.train.compile else ddp
        if (self.out / "last.pt").is_file():
            self.resume(self.out / "last.pt")
        elif cfg.model.init:
            self.initialise(cfg.model.init)

    # ----------------------------------------------------------- building
    def initialise(self, init: str) -> None:
        """Start from pretrained weights, then initialise the head (``model.init_head``).

        ``imprint`` (default) fits new people; ``checkpoint`` keeps the init
        checkpoint's trained class centres, for fine-tuning on the same people
        it was trained on (it also skips the imprinting pass over the data).
        """
        how = self.cfg.model.init_head
        if how not in ("imprint", "checkpoint") or (how == "checkpoint" and init == "sface"):
            raise UserError(f"model.init_head={how!r}: choose imprint, or checkpoint with a checkpoint in model.init")
        if init != "sface":  # "sface": the backbone constructor already loaded them
            ckpt = load_checkpoint(init)
            _missing, unexpected = self.model.load_state_dict(ckpt["model"], strict=False)  # missing: new modules
            if unexpected:
                raise UserError(f"model.init={init}: weights do not fit model.backbone={self.cfg.model.backbone}")
            if how == "checkpoint":
                self.load_head_weight(ckpt, init)
                return
        self.imprint_head()

    def load_head_weight(self, ckpt: dict[str, Any], init: str) -> None:
        weight = ckpt.get("objective", {}).get("head.weight")
        head = self.objective.head
        if isinstance(head, PartialFC) or weight is None or weight.shape != head.weight.shape:
            raise UserError(
                f"model.init_head=checkpoint: {init} has no head for these {self.data.num_classes} "
                "classes (a different training set?); use model.init_head=imprint"
            )
        head.weight.data.copy_(weight)

    def imprint_head(self) -> int:
        bs = self.cfg.train.batch_size
        n_steps = math.ceil(self.data.num_images / bs)
        batches = (b for _, b in zip(range(n_steps), self.data.batches(bs, start_step=0)))
        means, seen = class_means(self.model, batches, self.data.num_classes, self.preprocessing, self.device)
        head = self.objective.head
        if isinstance(head, PartialFC):  # [distributed] imprint this rank's shard only
            rows = slice(head.class_start, head.class_start + head.num_local)
            means, seen = means[rows], seen[rows]
        return imprint(head.weight.data, means, seen)

    # --------------------------------------------------------- checkpoint
    def checkpoint(self, *, with_optimizer: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"objective": self.objective.state_dict(), "num_classes": self.data.num_classes}
        if with_optimizer:
            state |= {
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "nonfinite_total": self.guard.total,
            }
        return make_checkpoint(
            model=self.model,
            config=self.cfg.to_dict(),
            preprocessing=self.preprocessing,
            step=self.step,
            **state,
        )

    def save(self, name: str = "last.pt", *, with_optimizer: bool = True) -> Path:
        path = self.out / name
        ckpt = self.checkpoint(with_optimizer=with_optimizer)  # [distributed] collective: gathers PartialFC shards
        if self.dist.world_size > 1 and with_optimizer:  # each rank's optimiser holds its own shard's moments
            atomic_save(self.optimizer.state_dict(), self.out / f"optimizer.rank{self.dist.rank}.pt")
        if self.dist.is_main:
            atomic_save(ckpt, path)
        return path

    def resume(self, path: Path) -> None:
        """Continue from ``path`` (``OUT/last.pt``); a file that cannot continue *this* run is a UserError."""
        start_over = f"use a new 'out' folder, or delete {path} to start over"
        try:
            ckpt = load_checkpoint(path, map_location=self.device)
        except UserError as e:
            raise UserError(f"cannot resume: {e}; {start_over}") from None
        missing = [k for k in ("objective", "optimizer", "scaler", "step") if k not in ckpt]
        if missing:
            raise UserError(f"{path} is not a training checkpoint (it has no {', '.join(missing)}); {start_over}")
        if config_from_dict(ckpt["config"]).model != self.cfg.model:
            raise UserError(f"{path} was written with a different model config; {start_over}")
        if ckpt.get("num_classes", self.data.num_classes) != self.data.num_classes:
            raise UserError(
                f"{path} was trained on {ckpt['num_classes']} classes but this config's data has "
                f"{self.data.num_classes}; {start_over}"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.objective.load_state_dict(ckpt["objective"])
            if self.dist.world_size > 1:  # [distributed] this rank's own optimiser state (its shard)
                shard = path.parent / f"optimizer.rank{self.dist.rank}.pt"
                self.optimizer.load_state_dict(load_tensors(shard, what="optimiser shard", map_location=self.device))
            else:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, KeyError, ValueError) as e:  # shapes or state of another run
            raise UserError(f"{path} does not fit this run ({brief(e)}); {start_over}") from None
        self.guard.total = ckpt.get("nonfinite_total", 0)
        self.step = int(ckpt["step"])

    # --------------------------------------------------------------- step
    def autocast(self):
        if self.cfg.train.amp == "none":
            return nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.cfg.train.amp]  # names: config.CHECKS
        return torch.autocast(self.device.type, dtype=dtype)

    def refresh_ui(self) -> None:
        ui = self.data.ui_images(
            self.cfg.data.ui.size, seed=step_seed(self.cfg.seed, self.step) + 1, device=self.device
        )  # UI generation on the device, like the degradation
        self.objective.refresh(self.model, self.preprocessing.normalize(ui))

    def batch_inputs(self, images: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input for a batch: framing jitter (if on), HR/VLR mix degraded on the device, normalised;
        and which rows are VLR (bool ``[B]``), for the objective's per-HR/VLR logs."""
        images = random_jitter(images.to(self.device, non_blocking=True), self.cfg.data.jitter, gen)
        images, vlr = random_vlr_rows(images, self.cfg.data.vlr, gen)
        x = self.preprocessing.normalize(images)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x, vlr

    def aux_loss(self, out: FaceOutput) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Terms beyond the objective for this step's batch (the cached trunk's cross-resolution term)."""
        return None, {}

    def batches(self, batch_size: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training stream, resumable at ``start_step``: made ahead and, for CUDA, pinned, so that
        ``batch_inputs``' copy to the device is asynchronous."""
        return self.data.batches(batch_size, start_step=start_step, pin_memory=self.device.type == "cuda")

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
        """One optimisation step; ``None`` when a non-finite loss made it skip."""
        cfg = self.cfg
        seed = step_seed(cfg.seed, self.step)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + self.dist.rank)  # [distributed] distinct per rank
        images, labels = local_batch(images, labels, self.dist)  # [distributed] this rank's rows
        x, vlr = self.batch_inputs(images, gen)
        labels = labels.to(self.device, non_blocking=True)
        lr = set_lr(self.optimizer, lr_factor(self.step, cfg.train.steps, cfg.schedule))
        self.model.train()
        with self.autocast():
            out = self.forward(x)
            aux, aux_logs = self.aux_loss(out)
        loss, logs = self.objective(out, labels, vlr)
        if aux is not None:
            loss, logs = loss + aux, logs | aux_logs
        self.optimizer.zero_grad(set_to_none=True)
        if not self.guard.check(loss, self.step):
            return None
        self.scaler.scale(loss).backward()
        if cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": float(loss.detach()), "lr": lr, **logs}

    # --------------------------------------------------------------- loop
    def evaluate(self) -> dict[str, Any]:
        if self.evaluator is None:
            return {}
        self.model.eval()
        metrics = self.evaluator(self.model, self.preprocessing)
        self.model.train()
        return metrics

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not self.dist.is_main:  # [distributed] only rank 0 writes logs
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (or ``stop_at``, for tests); returns the final evaluation."""
        cfg = self.cfg.train
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        ri_on = self.cfg.ri.enabled
        batches = self.batches(cfg.batch_size, self.step)
        columns = [
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        ]
        progress = Progress(*columns, disable=not (self.show_progress and self.dist.is_main), transient=False)
        t0, seen, waited = time.perf_counter(), 0, 0.0  # waited: time the loop blocked on the next batch
        try:
            with progress:
                task = progress.add_task("train", total=cfg.steps, completed=self.step, info="")
                while self.step < end:
                    if ri_on and self.step % self.cfg.ri.ui_every == 0:
                        self.refresh_ui()
                    t_fetch = time.perf_counter()
                    images, labels = next(batches)
                    waited += time.perf_counter() - t_fetch
                    logs = self.train_step(images, labels)
                    self.step += 1
                    seen += images.shape[0]
                    if logs is not None and (self.step % cfg.log_every == 0 or self.step == end):
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        ips = seen / elapsed
                        self._log({"step": self.step, "img_per_s": ips, "data_wait_share": waited / elapsed, **logs})
                        progress.update(task, info=f"loss {logs['loss']:.3f} lr {logs['lr']:.2e} {ips:.0f} img/s")
                    progress.update(task, completed=self.step)
                    if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                        self.save()
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < end:
                        self._log({"step": self.step, "eval": self.evaluate()})
        except KeyboardInterrupt:
            path = self.save()
            raise UserError(f"interrupted at step {self.step}; saved {path} — run the same command to resume") from None
        self.save()
        if self.step < cfg.steps:
            return {}
        self.save("model.pt", with_optimizer=False)
        final = self.evaluate()
        if final:
            self._log({"step": self.step, "eval": final})
        self.write_summary(final)
        return final

    def write_summary(self, final: dict[str, Any]) -> dict[str, Any]:
        """``OUT/summary.json``: the run's L_ID figures — mean and last value over the logged steps of the
        shares pushed (all, HR, VLR faces), μ_UI and σ_UI — and the final evaluation. Read back from
        ``log.jsonl``, so a resumed run's summary covers the steps before the interruption too."""
        summary: dict[str, Any] = {"step": self.step, "eval": final}
        if not self.dist.is_main:  # [distributed] rank 0's log is the run's (its shards of each batch)
            return summary
        by_step: dict[int, dict[str, Any]] = {}
        log = self.out / "log.jsonl"
        for line in log.read_text().splitlines() if log.is_file() else []:
            record = json.loads(line)
            if "loss" in record and record["step"] <= self.step:
                by_step[record["step"]] = record  # a step logged again after a resume: the later record
        records = [by_step[k] for k in sorted(by_step)]
        for key in SUMMARY_KEYS:
            values = [r[key] for r in records if key in r]
            if values:
                summary[key] = {"mean": sum(values) / len(values), "last": values[-1], "logged_steps": len(values)}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary
