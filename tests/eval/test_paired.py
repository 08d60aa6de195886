"""The paired bootstrap against a hand computation and a brute-force enumeration of every resample."""

import itertools
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from vlrface.eval.paired import bootstrap_draws, paired_bootstrap

# two seeds × three probes of rank-1 hits; difference d = t − b = [[1, 0, 0], [0, −1, 1]], mean 1/6
T = np.array([[1, 1, 0], [1, 0, 1]])
B = np.array([[0, 1, 0], [1, 1, 0]])


def exact_distribution(d: np.ndarray, resample_seeds: bool = True) -> dict[Fraction, Fraction]:
    """Every seed tuple × probe tuple (each equally likely under the bootstrap) → P(mean difference)."""
    s, p = d.shape
    seed_tuples = list(itertools.product(range(s), repeat=s)) if resample_seeds else [tuple(range(s))]
    counts: Counter = Counter()
    for si in seed_tuples:
        for pj in itertools.product(range(p), repeat=p):
            counts[Fraction(int(sum(d[a, b] for a in si for b in pj)), s * p)] += 1
    total = sum(counts.values())
    return {v: Fraction(c, total) for v, c in counts.items()}


def is_quantile(x: float, dist: dict[Fraction, Fraction], q: float, tol: float = 0.01) -> bool:
    below = float(sum(pr for v, pr in dist.items() if v < x - 1e-9))  # float x against exact atoms
    at_or_below = float(sum(pr for v, pr in dist.items() if v <= x + 1e-9))
    return below <= q + tol and at_or_below >= q - tol


def test_one_seed_two_probes_by_hand():
    """d = (1, 0): resamples (0,0) → 1, (0,1) and (1,0) → ½, (1,1) → 0, so P = ¼, ½, ¼.
    The 95 % interval is [0, 1]; the central 40 % (quantiles 0.3 and 0.7) is the single value ½."""
    r = paired_bootstrap(np.array([1, 1]), np.array([0, 1]), n_boot=20_000, seed=3)
    assert (r.mean, r.low, r.high, r.n_seeds, r.n_probes) == (0.5, 0.0, 1.0, 1, 2)
    r40 = paired_bootstrap(np.array([1, 1]), np.array([0, 1]), level=0.4, n_boot=20_000, seed=3)
    assert (r40.low, r40.high) == (0.5, 0.5)
    draws = bootstrap_draws(np.array([[1.0, 0.0]]), 40_000, seed=1)
    freq = {v: float(np.mean(draws == v)) for v in (0.0, 0.5, 1.0)}
    assert freq == pytest.approx({0.0: 0.25, 0.5: 0.5, 1.0: 0.25}, abs=0.01)


def test_point_estimate_by_hand_and_degenerate_cases():
    r = paired_bootstrap(T, B, n_boot=2000)
    assert r.mean == pytest.approx(1 / 6)  # (1 + 0 + 0 + 0 − 1 + 1) / 6
    same = paired_bootstrap(T, T, n_boot=500)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_bootstrap(np.ones((3, 4)), np.zeros((3, 4)), n_boot=500)
    assert (better.mean, better.low, better.high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("resample_seeds", [True, False])
def test_matches_brute_force_enumeration(resample_seeds):
    d = (T - B).astype(float)
    exact = exact_distribution(T - B, resample_seeds)  # 4 × 27 (or 27) equally likely resamples
    draws = bootstrap_draws(d, 60_000, resample_seeds=resample_seeds, seed=7)
    values, counts = np.unique(draws, return_counts=True)
    empirical = {Fraction(round(v * 6), 6): c / len(draws) for v, c in zip(values, counts)}
    assert set(empirical) <= set(exact)
    tv = 0.5 * sum(abs(float(exact[v]) - empirical.get(v, 0.0)) for v in exact)
    assert tv < 0.01
    assert float(sum(v * p for v, p in exact.items())) == pytest.approx(1 / 6)  # the bootstrap is centred
    r = paired_bootstrap(T, B, n_boot=60_000, resample_seeds=resample_seeds, seed=7)
    assert is_quantile(r.low, exact, 0.025) and is_quantile(r.high, exact, 0.975)


def test_seeded_and_checked():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (5, 40)), rng.integers(0, 2, (5, 40))
    assert paired_bootstrap(a, b, seed=1) == paired_bootstrap(a, b, seed=1)
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b, seed=2)
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(a, b[:, :3])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=95)
