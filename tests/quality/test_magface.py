import numpy as np
import pytest

from vlrface.errors import UserError
from vlrface.quality.magface import MagFaceScorer


def test_magnitude_on_a_magface_model(stub_model):
    got = MagFaceScorer(stub_model(), head="magface").score(np.array([[6.0, 8.0], [-1.0, 0.0]]))
    np.testing.assert_allclose(got, [10.0, 1.0])


@pytest.mark.parametrize("ckpt", [{"config": {"head": {"name": "adaface"}}}, {"config": {}}])
def test_refuses_models_not_trained_with_magface(stub_model, ckpt):
    with pytest.raises(UserError, match="use the norm scorer"):
        MagFaceScorer.from_checkpoint(stub_model(), ckpt)
