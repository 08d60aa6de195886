import pytest
import torch

from vlrface.config import RIConfig
from vlrface.errors import UserError
from vlrface.models import HEADS, FaceOutput, build_model
from vlrface.models.prm import PRM
from vlrface.models.ri import UICentre, pam_loss
from vlrface.train import objective
from vlrface.train.distributed import DistInfo
from vlrface.train.objective import Objective
from vlrface.train.partial_fc import PartialFC

D, C = 8, 3


def make(**ri):
    torch.manual_seed(0)
    head = HEADS.build("arcface", embedding_size=D, num_classes=C)
    return Objective(head, RIConfig(**ri), D)


def output(pam=True, prm=True, batch=6):
    torch.manual_seed(1)
    emb = torch.randn(batch, D, requires_grad=True)
    return FaceOutput(
        embedding=emb,
        plain=emb + 0.1,
        quality=torch.randn(batch, requires_grad=True) if prm else None,
        attention=torch.ones(batch, 1, 2, 2) if pam else None,
    )


LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


def test_disabled_equals_head_loss():
    obj = make(enabled=False)
    out = output()
    loss, logs = obj(out, LABELS)
    assert loss.item() == pytest.approx(obj.head(out.embedding, LABELS).loss.item())
    assert set(logs) == {"cls"}


def test_all_terms_sum_with_weights():
    obj = make(alpha=0.5, beta=2.0, gamma=3.0, tau=1e6)  # τ huge: every sample pushed
    loss, logs = obj(output(), LABELS)
    expected = logs["cls"] + 0.5 * logs["l1"] + 2.0 * logs["id"] + 3.0 * logs["mse"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["pushed"] == 1.0 and logs["id"] > 0


@pytest.mark.parametrize(
    "pam, prm, ui_stats, present",
    [
        (False, True, "nearest", {"l1", "id"}),
        (True, False, "nearest", {"mse", "id"}),
        (False, False, "nearest", {"id"}),
        (True, False, "prm", {"mse"}),
        (False, False, "prm", set()),
    ],
)
def test_terms_without_their_module_are_off(pam, prm, ui_stats, present):
    """L_ID needs a PRM only when μ_UI, σ_UI are the PRM's predictions."""
    _, logs = make(ui_stats=ui_stats)(output(pam=pam, prm=prm), LABELS)
    assert set(logs) - {"cls", "ri", "pushed", "mu_ui", "sigma_ui"} == present


def test_zero_weight_switches_a_term_off():
    _, logs = make(gamma=0.0, alpha=0.0)(output(), LABELS)
    assert "mse" not in logs and "l1" not in logs and "id" in logs


def test_unknown_form_or_update_mode():
    with pytest.raises(UserError, match="RI form"):
        make(form="cubic")
    with pytest.raises(UserError, match="ui_update"):
        make(ui_update="sometimes")
    with pytest.raises(UserError, match="ui_stats"):
        make(ui_stats="median")


class Identity(torch.nn.Module):
    """A "model" whose embedding is its input, so UI statistics can be worked out by hand."""

    def __init__(self, quality: torch.Tensor | None = None) -> None:
        super().__init__()
        self.quality = quality

    def forward(self, x: torch.Tensor) -> FaceOutput:
        return FaceOutput(embedding=x, plain=x, quality=self.quality, attention=None)


def test_ui_stats_nearest_is_the_label_free_ri_by_hand():
    # prototypes e1, e2, e3; UIs a = (1,0,0,1)/√2, b = (0,1,0,0) → ū = (1/2, 1/√2, 0, 1/2)
    # a: d_UI = 1 − 1/√2, nearest prototype e1 (cos 1/√2), second cos 0 → ξ = (1 − 1/√2) + 1 − (1 − 1/√2) = 1
    # b: d_UI = 1 − 1/√2, nearest e2 (cos 1), second cos 0            → ξ = (1 − 1/√2) + 1 − 0 = 2 − 1/√2
    head = HEADS.build("arcface", embedding_size=4, num_classes=3)
    head.weight.data = torch.eye(4)[:3] * 3.0  # prototypes are normalised before use
    obj = Objective(head, RIConfig(), 4)
    r2 = 2**-0.5
    obj.refresh(Identity(), torch.tensor([[r2, 0, 0, r2], [0, 1.0, 0, 0]]))
    torch.testing.assert_close(obj.ui.centre, torch.tensor([0.5, r2, 0, 0.5]))
    assert obj.ui.mu.item() == pytest.approx((1 + 2 - r2) / 2)
    assert obj.ui.sigma.item() == pytest.approx((1 - r2) / 2)  # population std of two values


def test_ui_stats_nearest_under_ema_uses_the_blended_centre():
    """μ_UI must be measured against the ū that training then uses, not the UIs' fresh centre."""
    obj = make(ui_update="ema", ema_momentum=0.5)
    obj.head.weight.data = torch.eye(D)[:C]
    a, b = torch.eye(D)[[3, 4]], torch.eye(D)[[5, 6]]
    obj.refresh(Identity(), a)
    mu_a = obj.ui.mu.item()
    obj.refresh(Identity(), b)
    expected = obj.label_free_ri(b, obj.ui.centre).mean().item()  # the stored (blended) centre
    assert obj.ui.mu.item() == pytest.approx(0.5 * mu_a + 0.5 * expected)
    assert obj.label_free_ri(b, UICentre.centre_of(b)).mean().item() != pytest.approx(expected)  # it matters


def test_ui_stats_nearest_needs_two_classes():
    with pytest.raises(UserError, match="2 classes"):
        Objective(HEADS.build("arcface", embedding_size=D, num_classes=1), RIConfig(), D)
    Objective(HEADS.build("arcface", embedding_size=D, num_classes=1), RIConfig(ui_stats="prm"), D)


def test_label_free_ri_gathers_over_partial_fc_shards_even_a_one_class_one(monkeypatch):
    """Rank 1 of 2 holds one of 3 classes: its top-2 is padded, gathered beside rank 0's, and the global
    nearest two are rank 0's 0.9 and 0.1 → ξ = d_UI + d_N − d_P = 0 + 0.9 − 0.1 (one UI, so d_UI = 0)."""
    monkeypatch.setattr(objective.D, "current", lambda: DistInfo(rank=1, world_size=2, distributed=True))
    monkeypatch.setattr(objective.D, "all_gather_nograd", lambda local: torch.cat([torch.tensor([[0.9, 0.1]]), local]))
    shard = HEADS.build("arcface", embedding_size=2, num_classes=1)
    shard.weight.data = torch.tensor([[0.0, 1.0]])  # cosine 0 to the UI
    obj = Objective(PartialFC(shard, 3), RIConfig(), 2)
    ui = torch.tensor([[1.0, 0.0]])
    assert obj.label_free_ri(ui, UICentre.centre_of(ui)).item() == pytest.approx(0.8)


def test_ui_stats_prm_takes_the_prm_predictions():
    obj = make(ui_stats="prm")
    obj.refresh(Identity(quality=torch.tensor([1.0, 3.0])), torch.randn(2, D))
    assert (obj.ui.mu.item(), obj.ui.sigma.item()) == (2.0, 1.0)


def test_refresh_sets_ui_centre_from_model_and_keeps_train_mode():
    model = build_model({"backbone": "iresnet_nano", "embedding_size": D})
    obj = Objective(HEADS.build("arcface", embedding_size=D, num_classes=C), RIConfig(), D)
    model.train()
    obj.refresh(model, torch.randn(5, 3, 112, 112))
    assert model.training
    assert bool(obj.ui.initialised)
    assert obj.ui.centre.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert obj.ui.sigma.item() > 0
    # the centre is the normalised mean of the model's (eval-mode) UI embeddings
    model.eval()
    x = torch.randn(5, 3, 112, 112)
    obj.refresh(model, x)
    ref = torch.nn.functional.normalize(torch.nn.functional.normalize(model(x).embedding, dim=1).mean(0), dim=0)
    torch.testing.assert_close(obj.ui.centre, ref.detach())


# ---------------------------------------------------------------- ri.div_source
def with_ui_stats(obj: Objective, mu: float, sigma: float) -> Objective:
    obj.ui.mu.fill_(mu)
    obj.ui.sigma.fill_(sigma)
    return obj


def test_predicted_diversion_and_shares_by_hand():
    """μ_UI = 2, σ_UI = 1, τ = 1; ξ̂ = (1.5, 2.5, 3.5, 4, 0, 3) → div = (−0.5, 0.5, 1.5, 2, −2, 1):
    L_ID = mean(1.5, 0.5, 0, 0, 3, 0) = 5/6; pushed (div < 1) = rows 0, 1, 4 — all three VLR rows (0, 1, 4),
    none of the HR rows (2, 3, 5: div 1.5, 2, 1 — not < 1)."""
    obj = with_ui_stats(make(div_source="predicted", tau=1.0, alpha=1.0, beta=2.0, gamma=0.0), 2.0, 1.0)
    out = output(pam=False)
    out.index = torch.tensor([1.5, 2.5, 3.5, 4.0, 0.0, 3.0], requires_grad=True)
    vlr = torch.tensor([True, True, False, False, True, False])
    loss, logs = obj(out, LABELS, vlr)
    assert logs["id"] == pytest.approx(5 / 6)
    assert (logs["pushed"], logs["pushed_vlr"], logs["pushed_hr"]) == (0.5, 1.0, 0.0)
    assert (logs["mu_ui"], logs["sigma_ui"]) == (2.0, 1.0)
    assert logs["xi_hat"] == pytest.approx(14.5 / 6)
    assert loss.item() == pytest.approx(logs["cls"] + logs["l1"] + 2.0 * 5 / 6, rel=1e-5)
    (g,) = torch.autograd.grad(loss, [out.index])  # β · (−1/σ)/B on pushed rows
    torch.testing.assert_close(g, torch.tensor([-1, -1, 0, 0, -1, 0]) * 2.0 / 6)


def test_shares_skip_a_group_the_batch_lacks():
    obj = with_ui_stats(make(tau=1e6), 0.0, 1.0)
    _, logs = obj(output(), LABELS, torch.zeros(6, dtype=torch.bool))
    assert logs["pushed_hr"] == 1.0 and "pushed_vlr" not in logs
    _, logs = obj(output(), LABELS)  # no mask given: only the overall share
    assert "pushed_hr" not in logs and "pushed_vlr" not in logs


def test_predicted_takes_ui_stats_from_the_prm_whatever_ui_stats_says():
    obj = make(div_source="predicted", ui_stats="nearest")
    obj.refresh(Identity(quality=torch.tensor([1.0, 3.0])), torch.randn(2, D))
    assert (obj.ui.mu.item(), obj.ui.sigma.item()) == (2.0, 1.0)


def test_predicted_needs_a_trained_prm_and_a_known_source():
    head = HEADS.build("arcface", embedding_size=D, num_classes=C)
    with pytest.raises(UserError, match=r"needs model\.prm=true"):
        Objective(head, RIConfig(div_source="predicted"), D, prm=False)
    with pytest.raises(UserError, match=r"ri\.alpha > 0"):
        Objective(head, RIConfig(div_source="predicted", alpha=0.0), D)
    with pytest.raises(UserError, match="div_source"):
        Objective(head, RIConfig(div_source="guessed"), D)
    Objective(head, RIConfig(div_source="predicted", beta=0.0), D, prm=False)  # no L_ID: nothing to compare
    Objective(head, RIConfig(div_source="predicted", enabled=False), D, prm=False)


def prm_output(prm: PRM) -> FaceOutput:
    torch.manual_seed(1)
    emb = torch.randn(6, D, requires_grad=True)
    return FaceOutput(emb, emb, prm(emb), None, index=prm.index(emb))


def l_id_grads(div_source: str, prm: PRM) -> tuple[torch.Tensor | None, ...]:
    """Gradients of β·L_ID alone (the loss with β = 1 minus the loss with β = 0) on the embedding and the PRM."""
    out = prm_output(prm)
    objs = [with_ui_stats(make(div_source=div_source, beta=b, gamma=0.0, tau=1e6), 0.0, 0.5) for b in (1.0, 0.0)]
    objs[1].head.load_state_dict(objs[0].head.state_dict())
    l_id = objs[0](out, LABELS)[0] - objs[1](out, LABELS)[0]
    return torch.autograd.grad(l_id, [out.embedding, prm.fc.weight], allow_unused=True)


def test_predicted_l_id_gradient_reaches_the_embedding_through_the_prm():
    """τ huge: every row pushed, L_ID = mean(τ − (w·v + b − μ)/σ) → ∂/∂v_i = −w/(σ·B); the PRM gets none."""
    prm = PRM(D).train()
    g_emb, g_w = l_id_grads("predicted", prm)
    w = prm.fc.weight.detach()[0]
    torch.testing.assert_close(g_emb, (-w / (0.5 * 6)).expand(6, D))
    assert g_w is None or float(g_w.abs().max()) == 0.0


def test_labelled_l_id_gradient_reaches_the_embedding_through_the_ri_not_the_prm():
    prm = PRM(D).train()
    g_emb, g_w = l_id_grads("labelled", prm)
    assert float(g_emb.abs().sum()) > 0  # through d_P, d_N, d_UI
    assert g_w is None or float(g_w.abs().max()) == 0.0
    # and it is not the predicted one
    assert not torch.allclose(g_emb, l_id_grads("predicted", PRM(D).train())[0])


def test_pam_branch_mse_is_on_the_attended_embedding():
    """With a PAM branch, L_MSE pulls ``FaceOutput.attended`` (not the embedding) to the UI-free projection."""
    obj = make(beta=0.0, alpha=0.0)
    obj.ui.centre.copy_(torch.eye(D)[0])
    out = output()
    out.attended = torch.randn(6, D)
    _, logs = obj(out, LABELS)
    assert logs["mse"] == pytest.approx(pam_loss(out.attended, out.plain, obj.ui.centre).item())
    assert logs["mse"] != pytest.approx(pam_loss(out.embedding, out.plain, obj.ui.centre).item())
