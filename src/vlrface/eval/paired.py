"""Paired comparison of two models: the mean per-probe difference and its percentile bootstrap CI.

Two models (say ArcFace and an RI variant) trained with the same seed on the
same data order and scored on the same probes give paired outcomes: an array
``[seeds, probes]`` per model (1/0 for a rank-1 hit, or any per-probe score).
The paired difference ``treatment − baseline`` cancels what both share (which
probes are hard, which seed drew a lucky data order), so it is far tighter
than comparing two means ± std.

The confidence interval is the percentile bootstrap of the mean difference
over a two-way resample: probes with replacement (the test people are a
sample) and, unless ``resample_seeds=False``, seeds with replacement (so is
the training randomness). One draw takes a multiset of seeds and a multiset
of probes and averages the difference over their cross product; with counts
``c_s`` (seeds) and ``k_p`` (probes) that is ``Σ c_s k_p d[s,p] / (S·P)``.
Seeded: the same inputs and ``seed`` give the same interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BOOT_CHUNK = 1000  # bootstrap draws computed at a time (memory: chunk × probes counts)


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of treatment − baseline over seeds × probes, and its ``level`` bootstrap CI ``[low, high]``."""

    mean: float
    low: float
    high: float
    level: float
    n_seeds: int
    n_probes: int
    n_boot: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _differences(treatment: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    t = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if t.shape != b.shape:
        raise ValueError(f"paired arrays must have one shape [seeds, probes]; got {t.shape} and {b.shape}")
    d = t - b
    if d.ndim == 1:  # one seed
        d = d[None, :]
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"paired arrays must be [seeds, probes] with at least one of each; got shape {t.shape}")
    return d


def bootstrap_draws(
    differences: np.ndarray, n_boot: int = 10_000, *, resample_seeds: bool = True, seed: int = 0
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the mean of ``differences [seeds, probes]`` (see the module doc)."""
    d = _differences(differences, np.zeros_like(differences))
    n_seeds, n_probes = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, BOOT_CHUNK):
        n = min(BOOT_CHUNK, n_boot - start)
        if resample_seeds and n_seeds > 1:
            seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n)
        else:
            seeds = np.ones((n, n_seeds), dtype=np.int64)
        probes = rng.multinomial(n_probes, np.full(n_probes, 1 / n_probes), size=n)
        out[start : start + n] = np.einsum("bs,sp,bp->b", seeds, d, probes, optimize=True) / (n_seeds * n_probes)
    return out


def paired_bootstrap(
    treatment: np.ndarray,
    baseline: np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    resample_seeds: bool = True,
    seed: int = 0,
) -> PairedDifference:
    """Mean of ``treatment − baseline`` (both ``[seeds, probes]``, or ``[probes]`` for one seed) and its
    ``level`` percentile bootstrap interval, resampling probes and (``resample_seeds``) seeds."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    d = _differences(treatment, baseline)
    draws = bootstrap_draws(d, n_boot, resample_seeds=resample_seeds, seed=seed)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return PairedDifference(float(d.mean()), float(low), float(high), level, d.shape[0], d.shape[1], n_boot)
