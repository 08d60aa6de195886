import math

import pytest
import torch

from vlrface.config import OptimConfig, ScheduleConfig
from vlrface.models import build_model
from vlrface.train.optim import build_optimizer, lr_factor, set_lr


def test_warmup_then_cosine():
    cfg = ScheduleConfig(name="cosine", warmup_steps=4)
    assert [lr_factor(s, 14, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 14, cfg) == pytest.approx(1.0)
    assert lr_factor(9, 14, cfg) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(14, 14, cfg) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule():
    cfg = ScheduleConfig(name="step", milestones=[3, 6], gamma=0.1)
    assert [round(lr_factor(s, 10, cfg), 6) for s in (0, 2, 3, 5, 6, 9)] == [1, 1, 0.1, 0.1, 0.01, 0.01]


def test_min_lr_ratio():
    cfg = ScheduleConfig(name="cosine", min_lr_ratio=0.1)
    assert lr_factor(10, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(5, 10, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_backbone_group_gets_its_multiplier():
    model = build_model({"backbone": "iresnet_nano", "embedding_size": 8})
    head = torch.nn.Linear(8, 3)
    opt = build_optimizer(model, head, OptimConfig(lr=0.2, backbone_lr_mult=0.1))
    assert set_lr(opt, 0.5) == pytest.approx(0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    n_backbone = sum(1 for p in model.backbone.parameters() if p.requires_grad)
    assert len(opt.param_groups[0]["params"]) == n_backbone
    assert any(p is head.weight for p in opt.param_groups[1]["params"])
