"""Optimiser and learning-rate schedule.

The schedule is a pure function of the step (no scheduler object to restore),
so a resumed run sets exactly the learning rate the uninterrupted run had.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import OptimConfig, ScheduleConfig
from ..errors import UserError
from ..models.face_model import FaceModel


def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier on the base LR at ``step`` (0-based): linear warm-up, then cosine/step/constant."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** sum(step >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        span = max(total_steps - cfg.warmup_steps, 1)
        t = min((step - cfg.warmup_steps) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    raise UserError(f"unknown schedule.name {cfg.name!r}; choose cosine, step or constant")


def build_optimizer(model: FaceModel, objective: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Two parameter groups: the backbone (LR × ``backbone_lr_mult``) and the rest (PAM, PRM, head)."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad and id(p) not in ids]
    groups = [
        {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult, "base_lr": cfg.lr * cfg.backbone_lr_mult},
        {"params": rest, "lr": cfg.lr, "base_lr": cfg.lr},
    ]
    fused = True if cfg.fused else None  # None: torch's default
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    raise UserError(f"unknown optim.name {cfg.name!r}; choose sgd or adamw")


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Apply the schedule factor to every group; returns the head-group LR for logging."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    return optimizer.param_groups[-1]["lr"]
