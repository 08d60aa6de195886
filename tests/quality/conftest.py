"""A stub backbone whose hidden layer and embedding are known by hand."""

import pytest
import torch
from torch import nn

from vlrface.models.face_model import FaceModel


class StubBackbone(nn.Module):
    """``fmap`` = the input itself ``[B,1,2,2]``; embedding = ``W · flatten(fmap)``.

    ``W`` has the rows (1,1,0,0) and (0,0,1,1).
    """

    feature_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.embedding_size = 2
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.flatten(1))


@pytest.fixture
def stub_model():
    """``stub_model(pam=False, prm=False)`` → a FaceModel on :class:`StubBackbone`, eval mode."""

    def make(pam: bool = False, prm: bool = False) -> FaceModel:
        return FaceModel(StubBackbone(), pam=pam, prm=prm).eval()

    return make


@pytest.fixture
def images():
    """``images([…4 values], …)`` → a ``[B,1,2,2]`` batch, each 'image' its own hidden layer for the stub."""

    def make(*rows: list[float]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 1, 2, 2)

    return make
