import math

import numpy as np
import pytest
import torch

from vlrface.errors import UserError
from vlrface.quality.serfiq import SERFIQScorer, embedding_layer, stochastic_agreement


def test_agreement_formula_by_hand():
    two = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # normalised: one pair at distance √2
    three = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])  # pairs √2, 0, √2
    assert float(stochastic_agreement(two)) == pytest.approx(2 / (1 + math.exp(2 / 4 * math.sqrt(2))), rel=1e-6)
    assert float(stochastic_agreement(three)) == pytest.approx(2 / (1 + math.exp(2 / 9 * 2 * math.sqrt(2))), rel=1e-6)
    assert float(stochastic_agreement(torch.ones(1, 5, 3))) == 1.0  # no movement → 2σ(0)


def test_masks_are_seeded_inverted_dropout(stub_model):
    scorer = SERFIQScorer(stub_model(), passes=50, dropout=0.25, seed=3)
    m = scorer.masks(8)
    assert m.shape == (50, 8) and torch.allclose(m.unique(), torch.tensor([0.0, 1 / 0.75]))
    torch.testing.assert_close(m, scorer.masks(8))
    assert not torch.equal(m, SERFIQScorer(stub_model(), passes=50, dropout=0.25, seed=4).masks(8))


def test_dropout_acts_on_the_embedding_layer_input(stub_model, images):
    model = stub_model()
    scorer = SERFIQScorer(model, passes=4, dropout=0.5, seed=0)
    x = images([1, 2, 3, 4])
    w = model.backbone.fc.weight.detach()
    stochastic = torch.stack([(scorer.masks(4) * x.flatten(1)) @ w.T], 0)  # [1, m, 2]
    np.testing.assert_allclose(scorer.score(x), stochastic_agreement(stochastic).numpy(), rtol=1e-6)
    assert not model.backbone.fc._forward_pre_hooks  # the hook is gone afterwards


def test_deterministic_and_independent_of_the_batch(stub_model):
    scorer = SERFIQScorer(stub_model(), passes=10)
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    whole = scorer.score(x)
    torch.manual_seed(123)  # the global RNG plays no part
    np.testing.assert_array_equal(whole, scorer.score(x, batch_size=1))
    np.testing.assert_allclose(scorer.score(x[2:3]), whole[2:3])
    assert ((whole > 0) & (whole < 1)).all()


def test_no_dropout_means_full_agreement(stub_model, images):
    np.testing.assert_allclose(SERFIQScorer(stub_model(), passes=3, dropout=0.0).score(images([1, 2, 3, 4])), [1.0])


def test_options_and_layer_are_checked(stub_model):
    with pytest.raises(UserError, match="passes ≥ 2"):
        SERFIQScorer(stub_model(), passes=1)
    backbone = stub_model().backbone
    assert embedding_layer(backbone, 2) is backbone.fc
    with pytest.raises(UserError, match="no Linear embedding layer"):
        embedding_layer(backbone, 7)
