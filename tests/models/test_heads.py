"""Margin heads: logits checked against hand-computed values on 2-d toy data.

Prototypes are the unit vectors W0=(1,0), W1=(0,1), W2=(−1,0); sample 0 lies at
60° from W0 (label 0), sample 1 at 170° from W1 (label 1, past π − m so the
ArcFace fallback applies).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlrface.models import HEADS
from vlrface.models.heads.unpg import negative_pair_cosines, whisker_filter

W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
A0, A1 = math.radians(60), math.radians(260)  # directions of the two samples
E = torch.tensor([[2 * math.cos(A0), 2 * math.sin(A0)], [4 * math.cos(A1), 4 * math.sin(A1)]])
Y = torch.tensor([0, 1])
# cosines to W0, W1, W2
COS = [[0.5, math.sin(A0), -0.5], [math.cos(A1), math.sin(A1), -math.cos(A1)]]


def build(name: str, **kw):
    head = HEADS.build(name, embedding_size=2, num_classes=3, **kw)
    with torch.no_grad():
        head.weight.copy_(W * 3)  # prototypes are normalised by the head
    return head


def expected(rows: list[list[float]], scale: float) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32) * scale


def test_cosine_is_plain_fp32():
    out = build("arcface")(E, Y)
    assert out.cosine.dtype == torch.float32
    torch.testing.assert_close(out.cosine, torch.tensor(COS), atol=1e-6, rtol=0)


def test_softmax_is_linear_plus_bias():
    head = build("softmax")
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    out = head(E, Y)
    torch.testing.assert_close(out.logits, E @ (3 * W).T + head.bias.detach())
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, Y))


def test_normface():
    out = build("normface", scale=10.0)(E, Y)
    torch.testing.assert_close(out.logits, expected(COS, 10.0), atol=1e-5, rtol=0)


def test_cosface():
    out = build("cosface", scale=10.0, margin=0.35)(E, Y)
    rows = [[0.5 - 0.35, COS[0][1], -0.5], [COS[1][0], COS[1][1] - 0.35, COS[1][2]]]
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, Y))


@pytest.mark.parametrize("easy", [False, True])
def test_arcface(easy):
    m = 0.5
    out = build("arcface", scale=10.0, margin=m, easy_margin=easy)(E, Y)
    t0 = math.cos(math.radians(60) + m)  # θ=60°: normal branch either way
    c1 = math.cos(math.radians(170))
    t1 = c1 if easy else c1 - math.sin(math.pi - m) * m  # θ=170° > π − m: fallback
    rows = [[t0, COS[0][1], -0.5], [COS[1][0], t1, COS[1][2]]]
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)


def test_arcface_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    head = HEADS.build("arcface", embedding_size=32, num_classes=10)
    emb = torch.randn(16, 32).bfloat16()
    y = torch.randint(0, 10, (16,))
    ref = head(emb.float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(emb, y)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.logits, ref.logits)
    torch.testing.assert_close(out.loss, ref.loss)


def test_arcface_gradient_finite_at_cosine_one():
    head = build("arcface")
    emb = (W[:2] * 5).clone().requires_grad_(True)  # exactly on the prototypes
    head(emb, Y).loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_mv_softmax_am_reweights_hard_negatives():
    t, m = 1.2, 0.35
    out = build("mv-softmax", scale=10.0, margin=m, t=t)(E, Y)
    target0 = 0.5 - m  # W1 (cos .866) is above it: hard; W2 (−.5) is not
    target1 = COS[1][1] - m  # −1.335; both negatives are above it
    h = lambda c: t * c + t - 1  # noqa: E731
    rows = [[target0, h(COS[0][1]), -0.5], [h(COS[1][0]), target1, h(COS[1][2])]]
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)


def test_curricularface_and_its_t_buffer():
    m = 0.5
    head = build("curricularface", scale=10.0, margin=m).train()
    out = head(E, Y)
    t = 0.01 * (COS[0][0] + COS[1][1]) / 2  # EMA from 0 with momentum 0.01, updated first
    assert head.t.item() == pytest.approx(t, abs=1e-7)
    t0 = math.cos(math.radians(60) + m)
    t1 = COS[1][1] - math.sin(math.pi - m) * m
    n = lambda c: c * (t + c)  # noqa: E731
    rows = [[t0, n(COS[0][1]), -0.5], [n(COS[1][0]), t1, n(COS[1][2])]]
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)
    head.eval()(E, Y)
    assert head.t.item() == pytest.approx(t, abs=1e-7)  # frozen in eval mode


def test_magface_margin_from_norm_and_regulariser():
    kw = dict(scale=10.0, l_a=1.0, u_a=3.0, l_m=0.2, u_m=0.6, lambda_g=2.0)
    out = build("magface", **kw)(E, Y)
    m0 = 0.2 + 0.4 * (2 - 1) / 2  # ‖e0‖ = 2 → 0.4
    m1 = 0.6  # ‖e1‖ = 4 clamps to u_a
    t0 = math.cos(math.radians(60) + m0)
    t1 = COS[1][1] - math.sin(math.pi - m1) * m1
    rows = [[t0, COS[0][1], -0.5], [COS[1][0], t1, COS[1][2]]]
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)
    g = ((2 / 9 + 1 / 2) + (3 / 9 + 1 / 3)) / 2
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, Y) + 2.0 * g, atol=1e-5, rtol=0)


def test_adaface_norm_adaptive_margin_and_ema():
    m, h = 0.4, 0.333
    head = build("adaface", scale=10.0, margin=m, h=h, t_alpha=1.0).train()
    out = head(E, Y)
    mean, std = 3.0, math.sqrt(2.0)  # norms 2 and 4, unbiased std
    assert head.batch_mean.item() == pytest.approx(mean) and head.batch_std.item() == pytest.approx(std)
    rows = [list(r) for r in COS]
    for i, (norm, theta) in enumerate([(2.0, math.radians(60)), (4.0, math.radians(170))]):
        z = max(-1.0, min(1.0, h * (norm - mean) / (std + 1e-3)))
        rows[i][i] = math.cos(theta - m * z) - (m + m * z)
    torch.testing.assert_close(out.logits, expected(rows, 10.0), atol=1e-5, rtol=0)


def test_adaface_ema_moves_slowly_and_not_in_eval():
    head = build("adaface", t_alpha=0.01).train()
    head(E, Y)
    assert head.batch_mean.item() == pytest.approx(0.99 * 20 + 0.01 * 3.0)
    before = head.batch_mean.clone()
    head.eval()(E, Y)
    assert torch.equal(head.batch_mean, before)


def test_whisker_filter_drops_outliers_both_sides():
    v = torch.tensor([0.3, -4.0, 0.1, 0.4, 0.2, 0.25, 5.0, 0.35])
    # sorted: −4, .1, .2, .25, .3, .35, .4, 5 → Q1 = v[2] = .2, Q3 = v[6] = .4, IQR .2
    kept = whisker_filter(v, r=1.5)
    torch.testing.assert_close(kept, torch.tensor([0.1, 0.2, 0.25, 0.3, 0.35, 0.4]))


def test_unpg_appends_negative_pair_cosines():
    emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 2])
    pairs = negative_pair_cosines(emb, y)  # pairs (0,2) (0,3) (1,2) (1,3) (2,3)
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(pairs, torch.tensor([0.0, r, 0.0, r, r]))
    for name, base in [("unpg-arcface", "arcface"), ("unpg-cosface", "cosface")]:
        torch.manual_seed(0)
        head = HEADS.build(name, embedding_size=2, num_classes=3, scale=10.0)
        torch.manual_seed(0)
        plain = HEADS.build(base, embedding_size=2, num_classes=3, scale=10.0)
        out, ref = head(emb, y), plain(emb, y)
        assert out.logits.shape == (4, 3 + 5)
        torch.testing.assert_close(out.logits[:, :3], ref.logits)
        torch.testing.assert_close(out.logits[:, 3:], 10.0 * pairs.sort().values.expand(4, -1))
        assert out.loss > ref.loss  # extra negatives only add to the partition function


def test_movr_is_one_vs_rest_with_margin():
    m, s = 0.4, 10.0
    head = build("movr", scale=s, margin=m)
    b = -math.log(3)
    assert head.bias.item() == pytest.approx(b)
    out = head(E, Y)
    t0 = math.cos(math.radians(60) + m)
    t1 = COS[1][1] - math.sin(math.pi - m) * m
    z = expected([[t0, COS[0][1], -0.5], [COS[1][0], t1, COS[1][2]]], s) + b
    torch.testing.assert_close(out.logits, z, atol=1e-5, rtol=0)
    pos = F.softplus(-z[[0, 1], [0, 1]])
    neg = F.softplus(z).sum(1) - F.softplus(z[[0, 1], [0, 1]])
    torch.testing.assert_close(out.loss, (pos + neg).mean(), atol=1e-5, rtol=0)


def test_margin_logits_ignores_rows_without_target():
    """PartialFC: label −1 means the row's class is not in the sampled subset."""
    head = build("arcface", scale=10.0)
    cos = head.cosine(E)
    logits = head.margin_logits(cos, torch.tensor([0, -1]), E.norm(dim=1))
    torch.testing.assert_close(logits[1], 10.0 * cos[1])
    assert logits[0, 0] < 10.0 * cos[0, 0]


@pytest.mark.parametrize("name", HEADS.names())
def test_sgd_steps_reduce_loss(name):
    torch.manual_seed(0)
    head = HEADS.build(name, embedding_size=8, num_classes=4).train()
    emb = torch.nn.Parameter(torch.randn(16, 8) * 5)
    y = torch.arange(16) % 4
    opt = torch.optim.SGD([emb, *head.parameters()], lr=0.05)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = head(emb, y).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
