import numpy as np
import pytest
import torch

from vlrface.errors import UserError
from vlrface.quality import SCORERS, build_scorer, head_input
from vlrface.quality.nan import NANScorer
from vlrface.quality.norm import NormScorer


def test_registry_lists_every_scorer():
    assert SCORERS.names() == ["crfiqa", "magface", "nan", "norm", "ri", "serfiq"]
    with pytest.raises(UserError, match=r"unknown quality scorer 'brisque'.*norm"):
        SCORERS.get("brisque")


def test_head_input_is_what_the_embedding_head_reads(stub_model, images):
    model = stub_model(pam=True)
    with torch.no_grad():
        model.pam.gate.fill_(0.7)  # PAM away from its identity start
        x = images([1, -2, 3, 0.5], [0, 1, -1, 2])
        fmap = head_input(model, x)
        assert not torch.allclose(fmap, x)
        assert torch.allclose(model.backbone.forward_head(fmap), model(x).embedding)


def test_images_go_through_the_embedding(stub_model, images):
    scorer = NormScorer(stub_model())
    x = images([1, 2, 3, 1], [0, 0, 0, 0])  # embeddings (3, 4) and (0, 0)
    np.testing.assert_allclose(scorer.score(x), [5.0, 0.0])
    np.testing.assert_allclose(scorer.score(np.array([[3.0, 4.0], [6.0, 8.0]])), [5.0, 10.0])


def test_batches_do_not_change_scores_and_empty_input_gives_none(stub_model):
    scorer = NANScorer(stub_model())
    x = torch.randn(7, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(scorer.score(x, batch_size=2), scorer.score(x))
    assert scorer.score(torch.zeros(0, 1, 2, 2)).shape == (0,)


def test_hidden_layer_scorers_refuse_embeddings_and_odd_shapes(stub_model):
    with pytest.raises(UserError, match="nan scorer reads a hidden layer"):
        NANScorer(stub_model()).score(torch.ones(3, 2))
    with pytest.raises(ValueError, match="got 3 dimensions"):
        NormScorer(stub_model()).score(torch.ones(3, 2, 2))


def test_build_scorer_reads_what_each_scorer_needs_from_the_checkpoint(stub_model):
    ckpt = {"config": {"head": {"name": "arcface"}}, "objective": {"head.weight": torch.eye(2)}}
    assert build_scorer("crfiqa", stub_model(), ckpt).centres.shape == (2, 2)
    with pytest.raises(UserError, match="magface head, not 'arcface'"):
        build_scorer("magface", stub_model(), ckpt)
    with pytest.raises(UserError, match="has none"):
        build_scorer("crfiqa", stub_model(), {"config": {}})
    with pytest.raises(UserError, match="trained without"):
        build_scorer("ri", stub_model(prm=False), ckpt)
