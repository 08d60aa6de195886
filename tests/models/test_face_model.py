import pytest
import torch
from torch import nn

from vlrface.errors import UserError
from vlrface.models.face_model import FaceModel


class LeftColumn(nn.Module):
    """Stub backbone: the embedding is the image's left pixel column (so mirroring changes it)."""

    embedding_size = 3
    feature_channels = 3

    def forward_features(self, x):
        return x

    def forward_head(self, fmap):
        return fmap[:, :, 0, 0]


def test_infer_with_and_without_flip_by_hand():
    model = FaceModel(LeftColumn(), pam=False, prm=True).eval()
    with torch.no_grad():
        model.prm.fc.weight.copy_(torch.tensor([[1.0, 0.0, 2.0]]))
        model.prm.fc.bias.fill_(0.5)
    x = torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]], [[0.0, 0.0]]]])  # [1,3,1,2]: left (3,0,0), right (0,4,0)
    emb, q = model.infer(x)
    assert torch.allclose(emb, torch.tensor([[1.0, 0.0, 0.0]])) and torch.allclose(q, torch.tensor([3.5]))
    emb, q = model.infer(x, flip=True)  # (3,0,0) + (0,4,0) → /5; quality (3.5 + 0.5) / 2
    assert torch.allclose(emb, torch.tensor([[0.6, 0.8, 0.0]])) and torch.allclose(q, torch.tensor([2.0]))
    assert FaceModel(LeftColumn(), pam=False, prm=False).infer(x)[1] is None


def zeroed(model: FaceModel) -> FaceModel:
    """PAM weights all 0: channel and spatial attention are ½ everywhere (and a residual gate is shut)."""
    with torch.no_grad():
        for p in model.pam.parameters():
            p.zero_()
    return model


X = torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]], [[1.0, 0.0]]]])  # left column (3, 0, 1)


def test_pam_residual_embedding_is_the_attended_one():
    out = zeroed(FaceModel(LeftColumn(), pam=True, prm=True)).eval()(X)
    torch.testing.assert_close(out.embedding, torch.tensor([[3.0, 0.0, 1.0]]))  # gate 0: v_a = v
    assert out.attended is None and out.attention is not None
    torch.testing.assert_close(out.index, out.quality)  # eval mode: ξ̂ for L_ID is the quality score


def test_pam_branch_keeps_the_backbone_embedding_and_returns_the_attended_one():
    """Branch: heads, RI and inference use v; v_a = head(x·attn) = ¼·v with zero attention weights."""
    model = zeroed(FaceModel(LeftColumn(), pam=True, prm=False, pam_mode="branch")).eval()
    out = model(X)
    torch.testing.assert_close(out.embedding, torch.tensor([[3.0, 0.0, 1.0]]))
    assert out.embedding is out.plain
    torch.testing.assert_close(out.attended, torch.tensor([[0.75, 0.0, 0.25]]))
    torch.testing.assert_close(model.infer(X)[0], torch.tensor([[3.0, 0.0, 1.0]]) / 10**0.5)


def test_unknown_pam_mode():
    with pytest.raises(UserError, match="pam_mode"):
        FaceModel(LeftColumn(), pam_mode="parallel")
