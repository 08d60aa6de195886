import torch
from torch import nn

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
