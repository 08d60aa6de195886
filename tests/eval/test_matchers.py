"""Matchers on tiny hand-computed galleries; NAC's open-set advantage on a constructed case."""

import math

import numpy as np
import pytest

from vlrface.errors import UserError
from vlrface.eval import metrics as M
from vlrface.eval.embed import Embedded
from vlrface.eval.matchers import MATCHERS, NACMatcher
from vlrface.eval.protocols import identify


def unit(*angles_deg):
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_registry_names():
    assert MATCHERS.names() == ["cosine", "nac"]
    with pytest.raises(UserError, match="unknown matcher"):
        MATCHERS.build("euclid")


def test_cosine_is_the_best_image_per_identity():
    gallery = unit(0, 90, 60)  # a, b, a
    m = MATCHERS.build("cosine").fit(gallery, ["a", "b", "a"])
    assert m.identities == ["a", "b"]
    s = m.scores(unit(45))
    # a: max(cos 45°, cos 15°) = cos 15°; b: cos 45°
    assert s == pytest.approx(np.array([[math.cos(math.radians(15)), math.cos(math.radians(45))]]), abs=1e-6)


def test_nac_prototypes_and_softmax_over_top_k():
    # a has two images at 0° and 90° → prototype at 45°; b at 180°; c at 300°
    m = MATCHERS.build("nac", k=2, temperature=0.5).fit(unit(0, 90, 180, 300), ["a", "a", "b", "c"])
    assert m.prototypes == pytest.approx(unit(45, 180, 300), abs=1e-6)
    c = np.cos(np.radians([45 - 30, 180 - 30, 300 - 30]))  # probe at 30°: [0.966, -0.866, 0]
    s = m.scores(unit(30))[0]
    top = c[[0, 2]]  # the two nearest prototypes: a and c
    z = np.exp(top / 0.5).sum()
    assert s == pytest.approx(np.exp(c / 0.5) / z, rel=1e-6)
    assert s[0] + s[2] == pytest.approx(1.0)  # the top-k share sums to one …
    assert s[1] < s[2]  # … and the identity outside it keeps its rank below


def test_nac_with_k_beyond_the_gallery_is_a_plain_softmax():
    m = NACMatcher(k=16, temperature=1.0).fit(unit(0, 120, 240), ["x", "y", "z"])
    s = m.scores(unit(10, 200))
    assert s.sum(1) == pytest.approx([1.0, 1.0])
    assert s[0].argmax() == 0 and s[1].argmax() == 2


def test_nac_top1_ignores_identities_outside_the_top_k():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 8)).astype(np.float32)
    probe = g[:1] + 0.1 * rng.normal(size=(1, 8)).astype(np.float32)
    far = -g[:1]  # opposite of the probe: never among its top-3
    base = NACMatcher(k=3).fit(g, list("abcdef")).scores(probe)
    more = NACMatcher(k=3).fit(np.r_[g, far], list("abcdefz")).scores(probe)
    assert more[0, :6] == pytest.approx(base[0])


@pytest.mark.parametrize("params", [{"k": 0}, {"temperature": 0.0}, {"temperature": -1.0}])
def test_nac_rejects_bad_parameters(params):
    with pytest.raises(UserError):
        NACMatcher(**params)


def test_nac_accepts_a_clear_match_that_cosine_ranks_below_an_ambiguous_stranger():
    # gallery: a at 0°, b at 20°, c at 150°; the known probe is 30° from c only;
    # the stranger sits between a and b (10° from both): higher raw cosine, no clear winner.
    gallery = Embedded(unit(0, 20, 150), None)
    probes = Embedded(unit(180, 10), None)
    ids, pids = ["a", "b", "c"], ["c", "stranger"]
    cos = identify(gallery, ids, probes, pids, matcher=MATCHERS.build("cosine"))
    nac = identify(gallery, ids, probes, pids, matcher=MATCHERS.build("nac", temperature=0.1))
    assert cos["cmc"][1] == nac["cmc"][1] == 1.0
    assert cos["open_set"]["dir_at_far"][0.01] == 0.0  # rejecting the stranger rejects the known probe too
    assert nac["open_set"]["dir_at_far"][0.01] == 1.0
    assert nac["matcher"] == "nac" and nac["n_gallery_identities"] == 3


def test_matcher_figures_equal_metrics_on_the_identity_scores():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(12, 6)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    gids = [i % 5 for i in range(12)]
    p = rng.normal(size=(30, 6)).astype(np.float32)
    pids = list(rng.integers(0, 8, 30))  # 5–7 are unmated
    m = MATCHERS.build("nac", k=3).fit(g, gids)
    s = m.scores(p)
    res = identify(Embedded(g, None), gids, Embedded(p, None), pids, matcher=MATCHERS.build("nac", k=3))
    assert res["cmc"][1] == pytest.approx(M.cmc(s, pids, m.identities, (1,))[1])
    assert res["open_set"]["dir_at_far"] == pytest.approx(M.dir_at_far(s, pids, m.identities))
