"""PartialFC in one process: the full-softmax loss at rate 1, positives always sampled, checkpoints."""

from __future__ import annotations

import pytest
import torch

from vlrface.errors import UserError
from vlrface.models import HEADS
from vlrface.train.partial_fc import PartialFC


def _pair(name: str, classes: int = 12, dim: int = 8, rate: float = 1.0, **kw):
    torch.manual_seed(0)
    full = HEADS.build(name, embedding_size=dim, num_classes=classes, **kw)
    shard = HEADS.build(name, embedding_size=dim, num_classes=classes, **kw)
    shard.load_state_dict(full.state_dict())
    return full, PartialFC(shard, classes, rate)


@pytest.mark.parametrize("name", ["arcface", "magface", "mv-softmax", "curricularface"])
def test_rate_one_equals_full_softmax(name):
    full, pfc = _pair(name)
    emb = torch.randn(6, 8, dtype=torch.float32) * 5
    labels = torch.tensor([0, 3, 3, 7, 11, 5])
    e1, e2 = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ref, out = full(e1, labels), pfc(e2, labels)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    ref.loss.backward()
    out.loss.backward()
    torch.testing.assert_close(e2.grad, e1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pfc.weight.grad, full.weight.grad, rtol=1e-4, atol=1e-6)


def test_compact_cosine_gives_own_and_nearest_negative():
    full, pfc = _pair("arcface")
    emb, labels = torch.randn(5, 8), torch.tensor([1, 2, 2, 9, 0])
    cos = full(emb, labels).cosine
    pair = pfc(emb, labels).cosine
    own = cos.gather(1, labels[:, None]).squeeze(1)
    neg = cos.scatter(1, labels[:, None], -2.0).max(1).values
    torch.testing.assert_close(pair[:, 0], own)
    torch.testing.assert_close(pair[:, 1], neg)
    assert (pfc.cosine_labels(labels) == 0).all()


def test_sampling_keeps_every_positive_and_the_rate():
    _, pfc = _pair("arcface", classes=100, rate=0.1)
    labels = torch.tensor([3, 3, 50, 97, 12, 64, 80, 81, 82, 83, 84, 85])  # 11 distinct > 10 samples
    for seed in range(3):
        torch.manual_seed(seed)
        owned = torch.ones_like(labels, dtype=torch.bool)
        index = pfc.sample(labels, owned)
        assert set(labels.tolist()) <= set(index.tolist())
        assert index.numel() == 11 and (index.diff() > 0).all()
    torch.manual_seed(0)
    few = pfc.sample(torch.tensor([5, 6]), torch.ones(2, dtype=torch.bool))
    assert few.numel() == 10 and {5, 6} <= set(few.tolist())


def test_sampled_loss_sees_only_sampled_centres():
    _, pfc = _pair("cosface", classes=50, rate=0.2)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    out = pfc(emb, labels)
    out.loss.backward()
    touched = (pfc.weight.grad.abs().sum(1) > 0).nonzero().flatten()
    assert out.logits.shape == (4, 10) and touched.numel() == 10
    assert {0, 1, 2, 3} <= set(touched.tolist())


def test_state_dict_holds_full_weight_and_reloads():
    _, pfc = _pair("arcface")
    state = pfc.state_dict()
    assert state["head.weight"].shape == (12, 8)
    _, other = _pair("arcface")
    other.head.weight.data.zero_()
    other.load_state_dict(state)
    torch.testing.assert_close(other.weight, pfc.weight)


def test_rejects_softmax_changing_heads():
    head = HEADS.build("movr", embedding_size=8, num_classes=4)
    with pytest.raises(UserError, match="margin heads only"):
        PartialFC(head, 4)
