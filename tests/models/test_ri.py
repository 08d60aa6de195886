"""RI pieces on hand-built 3-class, 4-d examples (values worked out in comments)."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlrface.models.ri import (
    RATIO_EPS,
    RI_FORMS,
    SIGMA_FLOOR,
    UICentre,
    index_diversion_loss,
    nearest_distances,
    pam_loss,
    pam_target,
    prm_loss,
    ri_distances,
)

R2 = 1 / math.sqrt(2)
W = torch.eye(4)[:3]  # prototypes e1, e2, e3
UI = torch.tensor([0.0, 0.0, 0.0, 1.0])  # ū = e4


def distances(v, labels):
    cosine = F.normalize(v, dim=1) @ W.T
    return ri_distances(v, cosine, torch.tensor(labels), UI)


def test_distances_by_hand():
    # v1 = (1,1,0,0), class 0: cos = (1/√2, 1/√2, 0) → d_P = 1−1/√2, d_N = 1−1/√2, d_UI = 1
    # v2 = (0,0,2,0), class 2: cos = (0, 0, 1)        → d_P = 0,      d_N = 1,      d_UI = 1
    d_p, d_n, d_ui = distances(torch.tensor([[1.0, 1, 0, 0], [0, 0, 2, 0]]), [0, 2])
    torch.testing.assert_close(d_p, torch.tensor([1 - R2, 0.0]))
    torch.testing.assert_close(d_n, torch.tensor([1 - R2, 1.0]))
    torch.testing.assert_close(d_ui, torch.tensor([1.0, 1.0]))


def test_nearest_distances_use_the_best_two_prototypes():
    # cosines (0.2, 0.9, −1, 0.5): nearest 0.9 → d_P = 0.1, second 0.5 → d_N = 0.5
    d_p, d_n = nearest_distances(torch.tensor([[0.2, 0.9, -1.0, 0.5]]))
    torch.testing.assert_close((d_p, d_n), (torch.tensor([0.1]), torch.tensor([0.5])))


def test_ri_forms_by_hand():
    d_p, d_n, d_ui = torch.tensor([1 - R2, 0.0]), torch.tensor([1 - R2, 1.0]), torch.tensor([1.0, 0.5])
    torch.testing.assert_close(RI_FORMS.build("additive", d_p=d_p, d_n=d_n, d_ui=d_ui), torch.tensor([1.0, 1.5]))
    ratio = RI_FORMS.build("ratio", d_p=d_p, d_n=d_n, d_ui=d_ui)
    torch.testing.assert_close(ratio, torch.tensor([(1 - R2) / (1 - R2 + RATIO_EPS), 0.5 / RATIO_EPS]))


def test_index_diversion_only_pushes_samples_within_tau():
    ri, mu, sigma = torch.tensor([1.0, 2.0]), torch.tensor(0.5), torch.tensor(0.25)
    # div = (ξ − μ)/σ = (2, 6): τ=2 pushes nobody; τ=3 pushes the first by 1 → mean 0.5
    assert index_diversion_loss(ri, mu, sigma, tau=2.0).item() == 0.0
    assert index_diversion_loss(ri, mu, sigma, tau=3.0).item() == pytest.approx(0.5)


def test_prm_smooth_l1_beta_075():
    # |diff| = 1 ≥ β → 1 − β/2 = 0.625 ; |diff| = 0.5 < β → 0.5·0.5²/0.75 = 1/6
    pred, ri = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 2.5], requires_grad=True)
    loss = prm_loss(pred, ri)
    assert loss.item() == pytest.approx((0.625 + 1 / 6) / 2)
    assert not loss.requires_grad  # the RI target is stop-gradient


def test_pam_target_removes_ui_direction():
    u = torch.tensor([1.0, 0, 0, 0])
    plain = torch.tensor([[1.0, 1, 0, 0]])  # v̂ − (v̂·ū)ū ∝ (0,1,0,0)
    torch.testing.assert_close(pam_target(plain, u), torch.tensor([[0.0, 1, 0, 0]]))
    assert pam_loss(torch.tensor([[0.0, 3, 0, 0]]), plain, u).item() == pytest.approx(0.0, abs=1e-6)
    assert pam_loss(torch.tensor([[0.0, 0, 1, 0]]), plain, u).item() == pytest.approx(2.0)


def test_ui_centre_recompute_and_ema():
    ui = UICentre(4)
    ui.update(torch.tensor([[2.0, 0, 0, 0], [0, 1, 0, 0]]), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(ui.centre, torch.tensor([R2, R2, 0, 0]))
    assert (ui.mu.item(), ui.sigma.item()) == pytest.approx((2.0, 1.0))
    ui.update(torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([4.0]), mode="ema", momentum=0.5)
    torch.testing.assert_close(ui.centre, F.normalize(torch.tensor([0.5 * R2 + 0.5, 0.5 * R2, 0, 0]), dim=0))
    assert ui.mu.item() == pytest.approx(3.0)
    assert ui.sigma.item() == pytest.approx(0.5 * 1.0 + 0.5 * SIGMA_FLOOR)  # one sample: std 0 → floor


def test_one_step_of_index_diversion_moves_away_from_ui_and_raises_ri():
    torch.manual_seed(0)
    u = F.normalize(torch.tensor([1.0, 1.0, 1.0, 1.0]), dim=0)
    v = torch.nn.Parameter(torch.tensor([[0.6, 0.5, 0.4, 0.5]]))  # close to ū, class 0
    label = torch.tensor([0])

    def ri_of(emb):
        cosine = F.normalize(emb, dim=1) @ W.T
        return ri_additive_of(ri_distances(emb, cosine, label, u))

    def ri_additive_of(d):
        return RI_FORMS.build("additive", d_p=d[0], d_n=d[1], d_ui=d[2])

    before_ri, before_dui = ri_of(v).item(), ri_distances(v, F.normalize(v, dim=1) @ W.T, label, u)[2].item()
    loss = index_diversion_loss(ri_of(v), torch.tensor(0.0), torch.tensor(0.5), tau=5.0)
    assert loss.item() > 0
    loss.backward()
    with torch.no_grad():
        v -= 0.1 * v.grad
    after_dui = ri_distances(v, F.normalize(v, dim=1) @ W.T, label, u)[2].item()
    assert after_dui > before_dui
    assert ri_of(v).item() > before_ri
