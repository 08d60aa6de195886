import re

import numpy as np
import pytest
import torch

from vlrface.errors import UserError
from vlrface.quality.ri import RIScorer


def test_prm_output_with_dropout_off(stub_model, images):
    model = stub_model(prm=True)
    with torch.no_grad():
        model.prm.fc.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.prm.fc.bias.fill_(0.5)
    scorer = RIScorer(model)
    np.testing.assert_allclose(scorer.score(np.array([[1.0, 1.0], [2.0, -1.0]])), [3.5, 0.5])
    np.testing.assert_allclose(scorer.score(images([1, 0, 0, 1])), [3.5])  # embedding (1, 1)
    np.testing.assert_allclose(scorer.score(images([1, 0, 0, 1])), model(images([1, 0, 0, 1])).quality.detach())


def test_needs_a_prm(stub_model):
    with pytest.raises(UserError, match=re.escape("model.prm: false")):
        RIScorer(stub_model(prm=False))
