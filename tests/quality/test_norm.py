import numpy as np

from vlrface.quality.norm import NormScorer


def test_l2_norm_of_the_unnormalised_embedding(stub_model):
    got = NormScorer(stub_model()).score(np.array([[3.0, -4.0], [0.0, 0.5], [1.0, 1.0]]))
    np.testing.assert_allclose(got, [5.0, 0.5, np.sqrt(2)], rtol=1e-6)
