import numpy as np
import torch

from vlrface.quality.nan import NANScorer, negative_aware_norm


def test_mean_of_the_active_units():
    # relu → (1, 0, 0, 3): ‖a‖₁ = 4 over ‖a‖₀ = 2 active; (0.5, 0.5, 0.5, 0.5) → 2/4; all negative → 0
    got = negative_aware_norm(torch.tensor([[1.0, -2.0, 0.0, 3.0], [0.5, 0.5, 0.5, 0.5], [-1.0, -1.0, -3.0, -0.1]]))
    np.testing.assert_allclose(got.numpy(), [2.0, 0.5, 0.0])


def test_differs_from_the_plain_norm(stub_model, images):
    # same L1 mass, spread over 4 units vs packed into 1: NAN prefers the sparse one
    got = NANScorer(stub_model()).score(images([1, 1, 1, 1], [4, 0, -5, 0]))
    np.testing.assert_allclose(got, [1.0, 4.0])


def test_reads_the_hidden_layer_after_pam(stub_model, images):
    model = stub_model(pam=True)
    with torch.no_grad():
        model.pam.gate.fill_(0.7)
    x = images([1, -2, 3, 0.5])
    expected = negative_aware_norm(model.pam(x)[0]).detach().numpy()
    np.testing.assert_allclose(NANScorer(model).score(x), expected, rtol=1e-6)
