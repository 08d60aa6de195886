"""DDP + PartialFC on CPU (gloo, world size 2, spawned on localhost) against one process."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vlrface.config import RIConfig
from vlrface.models import HEADS
from vlrface.models.ri import UICentre
from vlrface.train import distributed as D
from vlrface.train.objective import Objective
from vlrface.train.partial_fc import PartialFC

CLASSES, DIM, IN, BATCH, STEPS = 9, 8, 16, 8, 4  # 9 classes: uneven shards (5 + 4)
UI = torch.randn(6, DIM, generator=torch.Generator().manual_seed(5))  # stand-in UI embeddings


def _batches():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(BATCH, IN, generator=g), torch.randint(CLASSES, (BATCH,), generator=g)
    for _ in range(STEPS):
        yield x, y


def _init():
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Linear(IN, 16), torch.nn.PReLU(), torch.nn.Linear(16, DIM))
    head = HEADS.build("arcface", embedding_size=DIM, num_classes=CLASSES, margin=0.3, scale=16.0)
    return backbone, head


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def _single_process():
    backbone, head = _init()
    opt = _sgd([*backbone.parameters(), *head.parameters()])
    losses = []
    for x, y in _batches():
        loss = head(backbone(x), y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, head.weight.detach()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    info = D.init_distributed(torch.device("cpu"))
    backbone, full = _init()
    start, count = D.shard_range(CLASSES, world, rank)
    shard = HEADS.build("arcface", embedding_size=DIM, num_classes=count, margin=0.3, scale=16.0)
    shard.weight.data.copy_(full.weight.data[start : start + count])
    pfc = PartialFC(shard, CLASSES, 1.0)
    model = D.wrap_ddp(backbone, torch.device("cpu"), info)
    opt = _sgd([*model.parameters(), *pfc.parameters()])
    losses = []
    for x, y in _batches():
        x, y = D.local_batch(x, y, info)
        loss = pfc(model(x), y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # sampling at a lower rate: every positive of the global batch stays in its owner's sample
    sampler = PartialFC(HEADS.build("arcface", embedding_size=DIM, num_classes=count), CLASSES, 0.4)
    labels = torch.tensor([0, 1, 4, 5, 8, 8, 2, 6])
    local = labels - start
    owned = (local >= 0) & (local < count)
    torch.manual_seed(3)
    index = sampler.sample(local, owned)
    torch.save(
        {
            "rank": info.rank,
            "start": start,
            "count": count,
            "losses": losses,
            "full_weight": pfc.full_weight(),
            "ui_ri": Objective(pfc, RIConfig(), DIM).label_free_ri(UI, UICentre.centre_of(UI)),
            "sampled": (index + start).tolist(),
            "positives": sorted(set(labels[owned].tolist())),
        },
        os.path.join(out, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_range_covers_all_classes_once():
    for n, w in [(9, 2), (10, 3), (3, 4)]:
        ranges = [D.shard_range(n, w, r) for r in range(w)]
        ids = [i for s, c in ranges for i in range(s, s + c)]
        assert ids == list(range(n))


def test_two_ranks_match_one_process(tmp_path):
    ctx = mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 90
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("distributed workers did not finish in 90 s")
    ref_losses, ref_weight = _single_process()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert (r0["start"], r0["count"], r1["start"], r1["count"]) == (0, 5, 5, 4)
    assert r0["losses"] == pytest.approx(ref_losses, rel=1e-4, abs=1e-5)
    assert r1["losses"] == pytest.approx(ref_losses, rel=1e-4, abs=1e-5)
    assert ref_losses[-1] < ref_losses[0]  # it trained, so the match is not trivial
    torch.testing.assert_close(r0["full_weight"], ref_weight, rtol=1e-4, atol=1e-5)
    # the UIs' label-free RI needs the nearest two prototypes over both shards
    whole = HEADS.build("arcface", embedding_size=DIM, num_classes=CLASSES)
    whole.weight.data.copy_(r0["full_weight"])
    ref_ri = Objective(whole, RIConfig(), DIM).label_free_ri(UI, UICentre.centre_of(UI))
    torch.testing.assert_close(r0["ui_ri"], ref_ri)
    torch.testing.assert_close(r1["ui_ri"], ref_ri)
    for r in (r0, r1):
        owned = set(range(r["start"], r["start"] + r["count"]))
        assert set(r["positives"]) <= set(r["sampled"]) <= owned
        assert len(r["sampled"]) == max(int(0.4 * r["count"]), len(r["positives"]))
