import torch

from vlrface.models import build_model
from vlrface.models.pam import PAM
from vlrface.models.prm import PRM


def test_pam_shapes_and_attention_range():
    fmap = torch.randn(2, 32, 7, 7)
    attended, attn = PAM(32)(fmap)
    assert attended.shape == fmap.shape and attn.shape == (2, 1, 7, 7)
    assert float(attn.detach().min()) >= 0 and float(attn.detach().max()) <= 1


def test_prm_scalar_per_sample_and_dropout_only_in_training():
    prm = PRM(8, dropout=0.5)
    x = torch.randn(4, 8)
    assert prm(x).shape == (4,)
    prm.eval()
    assert torch.equal(prm(x), prm(x))


def test_face_model_gradients_reach_pam_prm_and_backbone():
    model = build_model({"backbone": "iresnet_nano", "embedding_size": 16})
    out = model(torch.randn(2, 3, 112, 112))
    assert out.embedding.shape == (2, 16) and out.quality.shape == (2,) and out.attention.shape[1] == 1
    (out.embedding.sum() + out.quality.sum()).backward()
    for name in ("pam.spatial.weight", "prm.fc.weight", "backbone.stem.0.weight"):
        assert dict(model.named_parameters())[name].grad is not None, name


def test_without_pam_embedding_is_plain():
    model = build_model({"backbone": "iresnet_nano", "embedding_size": 16, "pam": False, "prm": False}).eval()
    out = model(torch.randn(2, 3, 112, 112))
    assert torch.equal(out.embedding, out.plain) and out.quality is None and out.attention is None


def test_pam_starts_as_identity_and_learns_its_gate():
    pam = PAM(16)
    fmap = torch.randn(2, 16, 7, 7)
    attended, _ = pam(fmap)
    assert torch.equal(attended, fmap)
    attended.pow(2).sum().backward()
    assert pam.gate.grad is not None and pam.gate.grad.abs().item() > 0


def zero_attention(pam: PAM) -> PAM:
    """All attention weights 0: channel and spatial maps are sigmoid(0) = ½ everywhere."""
    with torch.no_grad():
        for p in pam.parameters():
            p.zero_()
    return pam


def test_pam_branch_is_the_attended_map_without_gate():
    """Branch form: x·attn itself, no residual and no gate; with zero weights that is ½·½·fmap."""
    pam = zero_attention(PAM(16, residual=False))
    assert pam.gate is None and "gate" not in dict(pam.named_parameters())
    fmap = torch.randn(2, 16, 7, 7)
    attended, attn = pam(fmap)
    torch.testing.assert_close(attended, 0.25 * fmap)
    torch.testing.assert_close(attn, torch.full((2, 1, 7, 7), 0.5))


def test_prm_index_is_dropout_free_and_feeds_gradient_to_the_embedding_only():
    prm = PRM(3, dropout=0.5).train()
    with torch.no_grad():
        prm.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        prm.fc.bias.fill_(0.25)
    x = torch.tensor([[2.0, 1.0, 4.0], [0.0, 0.0, 0.0]], requires_grad=True)
    xi = prm.index(x)
    torch.testing.assert_close(xi, torch.tensor([2.0 - 2.0 + 2.0 + 0.25, 0.25]))  # no dropout in training
    gx, gw = torch.autograd.grad(xi.sum(), [x, prm.fc.weight], allow_unused=True)
    torch.testing.assert_close(gx, torch.tensor([[1.0, -2.0, 0.5]] * 2))
    assert gw is None  # the PRM's parameters are detached: L_ID cannot re-fit the regressor
