"""Metrics against scikit-learn and brute-force references, ties and edge cases included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from vlrface.eval import metrics as M


def brute_cmc(scores, pids, gids, ranks):
    """Pessimistic rank: 1 + non-mates scoring ≥ the best mate; probes without mate dropped."""
    hits = {k: [] for k in ranks}
    for s, p in zip(scores, pids):
        mate = np.array([g == p for g in gids])
        if not mate.any():
            continue
        rank = 1 + np.sum(s[~mate] >= s[mate].max())
        for k in ranks:
            hits[k].append(rank <= k)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def brute_map(scores, pids, gids):
    aps = []
    for s, p in zip(scores, pids):
        y = np.array([g == p for g in gids])
        if y.any():
            aps.append(average_precision_score(y, s))
    return float(np.mean(aps))


def random_problem(rng, n_probe=30, n_gallery=50, n_ids=12, quantise=True):
    gids = rng.integers(0, n_ids, n_gallery)
    pids = rng.integers(0, n_ids + 3, n_probe)  # some probes have no mate
    scores = rng.normal(size=(n_probe, n_gallery))
    if quantise:  # many exact ties
        scores = np.round(scores, 1)
    return scores, pids, gids


@pytest.mark.parametrize("seed", range(4))
def test_cmc_and_map_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores, pids, gids = random_problem(rng)
    ranks = (1, 2, 5, 10, 20)
    assert M.cmc(scores, pids, gids, ranks) == pytest.approx(brute_cmc(scores, pids, gids, ranks))
    assert M.mean_average_precision(scores, pids, gids) == pytest.approx(brute_map(scores, pids, gids))


def test_cmc_hand_computed_and_string_ids():
    scores = np.array([[0.9, 0.5, 0.5], [0.1, 0.8, 0.8], [0.3, 0.2, 0.1]])
    gallery = np.array(["ann", "bob", "cy"])
    probes = ["bob", "cy", "zed"]  # bob's mate ties 0.5 with cy → behind ann and cy; cy ties bob; zed has no mate
    assert M.cmc(scores, probes, gallery, (1, 2, 3)) == {1: 0.0, 2: 0.5, 3: 1.0}
    # bob: mate at 0.5 with 3 items ≥ 0.5 → AP 1/3; cy: mate at 0.8 with 2 items ≥ 0.8 → AP 1/2
    assert M.mean_average_precision(scores, probes, gallery) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_all_scores_equal_is_a_failure_not_a_success():
    scores = np.zeros((4, 5))
    ids = [0, 1, 2, 3, 4]
    assert M.cmc(scores, ids[:4], ids, (1, 5)) == {1: 0.0, 5: 1.0}
    assert M.mean_average_precision(scores, ids[:4], ids) == pytest.approx(0.2)  # sklearn gives 1/5 too


def test_single_probe_and_no_mated_probe():
    assert M.cmc(np.array([[0.2, 0.7]]), ["a"], ["b", "a"], (1,)) == {1: 1.0}
    res = M.cmc(np.array([[0.2, 0.7]]), ["z"], ["b", "a"], (1,))
    assert np.isnan(res[1]) and np.isnan(M.mean_average_precision(np.array([[0.2, 0.7]]), ["z"], ["b", "a"]))


def test_identification_metrics_equals_full_matrix_path():
    rng = np.random.default_rng(3)
    pe = rng.normal(size=(600, 16)).astype(np.float32)  # > one chunk of probes
    ge = rng.normal(size=(80, 16)).astype(np.float32)
    pe /= np.linalg.norm(pe, axis=1, keepdims=True)
    ge /= np.linalg.norm(ge, axis=1, keepdims=True)
    gids = [f"id{i % 30}" for i in range(80)]
    pids = [f"id{i % 35}" for i in range(600)]
    got = M.identification_metrics(pe, pids, ge, gids)
    scores = pe.astype(np.float64) @ ge.T.astype(np.float64)
    assert got["cmc"] == pytest.approx(brute_cmc(scores, pids, gids, M.RANKS), abs=2e-3)
    assert got["map"] == pytest.approx(brute_map(scores, pids, gids), abs=2e-3)


def test_roc_curve_equals_sklearn():
    rng = np.random.default_rng(0)
    gen, imp = np.round(rng.normal(1, 1, 200), 1), np.round(rng.normal(0, 1, 300), 1)
    far, tar, thr = M.roc_curve(gen, imp)
    y = np.r_[np.ones(200), np.zeros(300)]
    fpr, tpr, sk_thr = sk_roc_curve(y, np.r_[gen, imp], drop_intermediate=False)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert M.auc(gen, imp) == pytest.approx(roc_auc_score(y, np.r_[gen, imp]))
    _, frr, _ = M.det_curve(gen, imp)
    np.testing.assert_allclose(frr, 1 - tpr)


@pytest.mark.parametrize("seed", range(3))
def test_tar_at_far_is_sklearn_operating_point(seed):
    rng = np.random.default_rng(seed)
    gen, imp = np.round(rng.normal(1.5, 1, 150), 1), np.round(rng.normal(0, 1, 1000), 1)
    fpr, tpr, _ = sk_roc_curve(np.r_[np.ones(150), np.zeros(1000)], np.r_[gen, imp], drop_intermediate=False)
    fars = (0.3, 0.1, 0.01, 0.001, 0.0, 1.0)
    got = M.tar_at_far(gen, imp, fars)
    for f in fars:
        assert got[f] == pytest.approx(tpr[fpr <= f].max()), f


def test_tar_at_far_hand_computed():
    imp = np.array([0.9, 0.5, 0.4, 0.1])  # FAR 0.25 → reject the 0.5 impostor: accept > 0.5
    gen = np.array([0.95, 0.6, 0.5, 0.2])
    assert M.tar_at_far(gen, imp, (0.25, 0.0)) == {0.25: 0.5, 0.0: 0.25}
    assert M.tar_at_far(gen, np.array([]), (0.1,)) == {0.1: 1.0}  # no impostor can be falsely accepted


def brute_eer(gen, imp):
    """Densely sample every segment of sklearn's ROC; the point where FAR ≈ FRR."""
    fpr, tpr, _ = sk_roc_curve(np.r_[np.ones(len(gen)), np.zeros(len(imp))], np.r_[gen, imp], drop_intermediate=False)
    t = np.linspace(0, 1, 1001)[:, None]
    x, y = fpr[:-1] + t * np.diff(fpr), (1 - tpr[:-1]) - t * np.diff(tpr)
    return x.flat[np.argmin(np.abs(x - y))]


def test_eer_matches_interpolated_roc_and_extremes():
    rng = np.random.default_rng(1)
    gen, imp = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    assert M.eer(gen, imp) == pytest.approx(brute_eer(gen, imp), abs=1e-3)
    assert M.eer(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert M.eer(np.zeros(3), np.zeros(5)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.eer(np.array([]), np.array([1.0]))


def test_tpir_at_fpir_brute_force():
    rng = np.random.default_rng(5)
    gids = np.arange(20) % 10
    pids = np.r_[rng.integers(0, 10, 40), np.arange(100, 140)]  # 40 mated, 40 non-mated
    scores = np.round(rng.normal(size=(80, 20)), 1)
    for rank in (1, 3):
        got = M.tpir_at_fpir(scores, pids, gids, (0.3, 0.1, 0.0), rank=rank)
        top_unmated = scores[40:].max(1)
        for f, v in got.items():
            # brute force: the lowest threshold t with FPIR(accept ≥ t) ≤ f, over candidate scores
            cands = np.r_[np.unique(scores), np.inf]
            t = min(c for c in cands if np.mean(top_unmated >= c) <= f)
            hits = []
            for s, p in zip(scores[:40], pids[:40]):
                mate = gids == p
                r = 1 + np.sum(s[~mate] >= s[mate].max())
                hits.append(r <= rank and s[mate].max() >= t)
            assert v == pytest.approx(np.mean(hits)), (rank, f)


def brute_erc(scores, gen, q, fmr, ratio, fixed):
    order = np.argsort(q, kind="stable")
    keep = order[int(np.floor(ratio * len(q) + 1e-9)) :]
    imp_pool = scores[~gen] if fixed else scores[keep][~gen[keep]]
    cands = np.r_[np.unique(scores), np.inf]
    t = min(c for c in cands if np.mean(imp_pool >= c) <= fmr)  # lowest threshold meeting the FMR
    g = scores[keep][gen[keep]]
    return np.mean(g < t)


@pytest.mark.parametrize("fixed", [True, False])
def test_erc_brute_force(fixed):
    rng = np.random.default_rng(2)
    n = 400
    gen = rng.random(n) < 0.3
    q = np.round(rng.random(n), 2)
    scores = np.round(np.where(gen, rng.normal(0, 1, n) + 4 * q, rng.normal(0, 1, n)), 2)
    ratios = np.array([0.0, 0.1, 0.5, 0.9])
    got = M.erc(scores, gen, q, 0.05, ratios, fixed)
    want = [brute_erc(scores, gen, q, 0.05, r, fixed) for r in ratios]
    np.testing.assert_allclose(got, want)
    assert got[2] < got[0]  # quality correlates with genuine scores here


def test_edc_pauc_is_area_under_erc():
    rng = np.random.default_rng(4)
    gen = rng.random(300) < 0.4
    scores, q = rng.normal(size=300) + gen, rng.random(300)
    r = np.linspace(0, 0.2, 101)
    assert M.edc_pauc(scores, gen, q, 0.1) == pytest.approx(np.trapezoid(M.erc(scores, gen, q, 0.1, r), r))


def test_dir_at_far_brute_force():
    rng = np.random.default_rng(11)
    gids = np.arange(15)
    pids = np.r_[rng.integers(0, 15, 50), np.arange(100, 130)]  # 50 mated, 30 non-mated
    scores = np.round(rng.normal(size=(80, 15)), 1)
    got = M.dir_at_far(scores, pids, gids, (0.5, 0.1, 0.0))
    top_unmated = scores[50:].max(1)
    for far, v in got.items():
        cands = np.r_[np.unique(scores), np.inf]  # lowest accept-≥ threshold meeting the FAR
        t = min(c for c in cands if np.mean(top_unmated >= c) <= far)
        hits = [s[p] >= t and np.sum(s >= s[p]) == 1 for s, p in zip(scores[:50], pids[:50])]
        assert v == pytest.approx(np.mean(hits)), far
    assert got == M.tpir_at_fpir(scores, pids, gids, (0.5, 0.1, 0.0), rank=1)


def test_scored_probe_stats_equals_the_full_matrix_in_any_chunking():
    rng = np.random.default_rng(3)
    scores, pids, gids = random_problem(rng)
    emb = np.arange(len(pids))[:, None]  # row indices stand in for embeddings
    full = M.probe_stats(scores, pids, gids)
    for chunk in (1, 7, 100):
        got = M.scored_probe_stats(lambda rows: scores[rows[:, 0]], emb, pids, gids, chunk)
        for f in ("rank", "mate_score", "top_score"):
            np.testing.assert_array_equal(getattr(got, f), getattr(full, f))
