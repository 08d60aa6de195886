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
