import numpy as np
import pytest
import torch

from vlrface.errors import UserError
from vlrface.quality.crfiqa import CRFIQAScorer


def test_nearest_over_second_nearest_centre(stub_model):
    # centres (unnormalised) along +x, +y, −x; embedding ∝ (0.6, 0.8): cosines 0.6, 0.8, −0.6
    scorer = CRFIQAScorer(stub_model(), torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]]))
    got = scorer.score(np.array([[3.0, 4.0], [-1.0, 0.0]]))
    # row 2: cosines 1.0 (−x centre) and 0.0 (+y) → 1 / (0 + 1)
    np.testing.assert_allclose(got, [0.8 / 1.6, 1.0], rtol=1e-6)


def test_equidistant_faces_score_below_decisive_ones(stub_model):
    scorer = CRFIQAScorer(stub_model(), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    between, decisive = scorer.score(np.array([[1.0, 1.0], [1.0, 0.1]]))
    assert between == pytest.approx(np.sqrt(0.5) / (np.sqrt(0.5) + 1), rel=1e-6) and decisive > between


def test_needs_two_centres_of_the_embedding_size(stub_model):
    with pytest.raises(UserError, match="≥ 2 class centres of size 2"):
        CRFIQAScorer(stub_model(), torch.ones(1, 2))
    with pytest.raises(UserError, match="≥ 2 class centres of size 2"):
        CRFIQAScorer(stub_model(), torch.ones(3, 5))
