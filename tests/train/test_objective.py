import pytest
import torch

from vlrface.errors import UserError
from vlrface.models import HEADS, FaceOutput, build_model
from vlrface.train.config import RIConfig
from vlrface.train.objective import Objective

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


@pytest.mark.parametrize("pam, prm, present", [(False, True, {"l1", "id"}), (True, False, {"mse"}), (False, False, set())])
def test_terms_without_their_module_are_off(pam, prm, present):
    _, logs = make()(output(pam=pam, prm=prm), LABELS)
    assert set(logs) - {"cls", "ri", "pushed"} == present


def test_zero_weight_switches_a_term_off():
    _, logs = make(gamma=0.0, alpha=0.0)(output(), LABELS)
    assert "mse" not in logs and "l1" not in logs and "id" in logs


def test_unknown_form_or_update_mode():
    with pytest.raises(UserError, match="RI form"):
        make(form="cubic")
    with pytest.raises(UserError, match="ui_update"):
        make(ui_update="sometimes")


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
