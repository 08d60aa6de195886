"""Face recognition metrics: identification (CMC, mAP, TPIR@FPIR, DIR@FAR), verification
(ROC, TAR@FAR, EER) and quality (ERC / EDC).

Conventions shared by every function:

* Scores are similarities: higher = more alike. Inputs are NumPy arrays (or
  anything ``np.asarray`` takes); identities may be any hashable type and are
  compared with ``==`` (``"7"`` and ``7`` differ).
* **Ties count against the system.** A mated gallery item that ties with a
  non-mated one is ranked *behind* it (CMC and TPIR), and in average precision
  every item of a tie group gets the precision at the *bottom* of the group
  (exactly scikit-learn's ``average_precision_score``). A model that outputs
  one constant score therefore scores rank-1 = 0, not 1.
* **Thresholds at a target false-accept rate** are the operating points of
  scikit-learn's ``roc_curve``: accept when ``score > u``, where ``u`` is the
  lowest impostor score that can still be rejected while the false-accept rate
  stays ≤ the target (``-inf`` when every impostor may be accepted). TAR@FAR is
  then ``max(tpr[fpr <= far])`` over the full ROC.
* A metric whose population is empty is ``nan`` (e.g. CMC when no probe has a
  mate); closed-set metrics ignore probes without a mate (they belong to
  :func:`tpir_at_fpir`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

RANKS = (1, 5, 10, 20)
FARS = (0.3, 0.1, 0.01, 0.001)
FPIRS = (0.3, 0.2, 0.1)
DIR_FARS = (0.1, 0.01)
CHUNK = 256  # probes per block in the chunked identification path


# ---------------------------------------------------------------- identities
Ids = Sequence[Hashable] | np.ndarray
"""Identity labels, one per row: any sequence of hashable values, or a 1-D array; compared by equality."""


def _encode_ids(probe_ids: Ids, gallery_ids: Ids) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes with the same equality as the ids; probe ids absent from the gallery get −1."""
    codes: dict[Hashable, int] = {}
    g = np.fromiter((codes.setdefault(i, len(codes)) for i in gallery_ids), np.int64, len(gallery_ids))
    p = np.fromiter((codes.get(i, -1) for i in probe_ids), np.int64, len(probe_ids))
    return p, g


def same_identity(probe_ids: Ids, gallery_ids: Ids) -> np.ndarray:
    """Boolean ``[P, G]``: probe i and gallery item j share an identity (genuine pair)."""
    p, g = _encode_ids(probe_ids, gallery_ids)
    return (p[:, None] == g[None, :]) & (p[:, None] >= 0)


# ------------------------------------------------------- per-probe statistics
@dataclass
class ProbeStats:
    """What every identification metric needs, one entry per probe.

    ``rank`` is the pessimistic rank of the best mate (1 = first; 0 = the probe
    has no mate in the gallery), ``mate_score`` its score (−inf without mate),
    ``top_score`` the best score over the whole gallery (open-set threshold),
    ``ap`` the average precision (nan without mate).
    """

    rank: np.ndarray
    mate_score: np.ndarray
    top_score: np.ndarray
    ap: np.ndarray

    @property
    def mated(self) -> np.ndarray:
        return self.rank > 0

    @staticmethod
    def concat(parts: list[ProbeStats]) -> ProbeStats:
        return ProbeStats(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("rank", "mate_score", "top_score", "ap"))
        )


def _mates_index(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``[P, k_max]`` gallery indices of each probe's mates, padded with −1."""
    order = np.argsort(g, kind="stable")
    sorted_g = g[order]
    lo, hi = np.searchsorted(sorted_g, p, "left"), np.searchsorted(sorted_g, p, "right")
    n = np.where(p >= 0, hi - lo, 0)
    k = int(n.max()) if n.size else 0
    idx = np.full((len(p), k), -1, np.int64)
    for j in range(k):
        has = n > j
        idx[has, j] = order[lo[has] + j]
    return idx


def _stats_block(s: np.ndarray, mates: np.ndarray) -> ProbeStats:
    """Statistics of one block of scores ``s [c, G]`` given padded mate indices ``[c, k]``.

    One vectorised ≥-count per probe over its own mates: cost ∝ Σ mates × G.
    """
    c = s.shape[0]
    valid = mates >= 0
    n_mates = valid.sum(1)
    m = np.where(valid, np.take_along_axis(s, mates.clip(min=0), 1) if s.shape[1] else 0.0, np.inf)
    n_ge = np.zeros(m.shape, np.int64)  # gallery items scoring ≥ each mate score
    for i in np.nonzero(n_mates)[0]:
        k = n_mates[i]  # mates are packed to the left
        n_ge[i, :k] = np.count_nonzero(s[i] >= m[i, :k, None], axis=1)
    mates_ge = ((m[:, None, :] >= m[:, :, None]) & valid[:, None, :]).sum(2)
    mated = n_mates > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(valid, mates_ge / np.maximum(n_ge, 1), 0.0).sum(1) / n_mates
    j = np.argmax(np.where(valid, m, -np.inf), 1)[:, None] if m.shape[1] else np.zeros((c, 1), np.int64)
    if m.shape[1]:
        rank = np.where(mated, 1 + np.take_along_axis(n_ge - mates_ge, j, 1)[:, 0], 0)
        mate_score = np.where(mated, np.take_along_axis(m, j, 1)[:, 0], -np.inf)
    else:
        rank, mate_score = np.zeros(c, np.int64), np.full(c, -np.inf)
    top = s.max(1) if s.shape[1] else np.full(c, -np.inf)
    return ProbeStats(
        rank.astype(np.int64), mate_score.astype(np.float64), top.astype(np.float64), np.where(mated, ap, np.nan)
    )


def probe_stats(scores: np.ndarray, probe_ids: Ids, gallery_ids: Ids) -> ProbeStats:
    """:class:`ProbeStats` from a full score matrix ``[P, G]``."""
    s = np.asarray(scores, dtype=np.float64)
    p, g = _encode_ids(probe_ids, gallery_ids)
    if s.shape != (len(p), len(g)):
        raise ValueError(f"scores shape {s.shape} != (probes {len(p)}, gallery {len(g)})")
    return _stats_block(s, _mates_index(p, g))


def embedding_probe_stats(
    probe_emb: np.ndarray,
    probe_ids: Ids,
    gallery_emb: np.ndarray,
    gallery_ids: Ids,
    chunk: int = CHUNK,
) -> ProbeStats:
    """:class:`ProbeStats` from L2-normalised embeddings, ``chunk`` probes at a time (cosine scores).

    Memory is the gallery plus one reused ``chunk × G`` float32 score block;
    time is one matrix product plus one ≥-count pass per (probe, mate).
    """
    pe = np.ascontiguousarray(probe_emb, dtype=np.float32)
    ge = np.ascontiguousarray(gallery_emb, dtype=np.float32)
    p, g = _encode_ids(probe_ids, gallery_ids)
    if len(pe) != len(p) or len(ge) != len(g):
        raise ValueError("embeddings and ids differ in length")
    mates = _mates_index(p, g)
    block = np.empty((min(chunk, len(p)), len(g)), np.float32)
    parts = []
    for i in range(0, len(p), chunk):
        s = block[: len(pe[i : i + chunk])]
        np.matmul(pe[i : i + chunk], ge.T, out=s)
        parts.append(_stats_block(s, mates[i : i + chunk]))
    return ProbeStats.concat(parts) if parts else _stats_block(np.zeros((0, len(g)), np.float32), mates)


def scored_probe_stats(
    score_fn: Callable[[np.ndarray], np.ndarray],
    probe_emb: np.ndarray,
    probe_ids: Ids,
    gallery_ids: Ids,
    chunk: int = CHUNK,
) -> ProbeStats:
    """:class:`ProbeStats` from any scorer ``probe rows [c, D] → scores [c, G]``, ``chunk`` probes at a time.

    For matchers whose scores are not a plain dot product (e.g. NAC); memory is
    one ``chunk × G`` block, as in :func:`embedding_probe_stats`.
    """
    pe = np.asarray(probe_emb)
    p, g = _encode_ids(probe_ids, gallery_ids)
    if len(pe) != len(p):
        raise ValueError("probe embeddings and ids differ in length")
    mates = _mates_index(p, g)
    parts = [
        _stats_block(np.asarray(score_fn(pe[i : i + chunk]), np.float64), mates[i : i + chunk])
        for i in range(0, len(p), chunk)
    ]
    return ProbeStats.concat(parts) if parts else _stats_block(np.zeros((0, len(g))), mates)


def cmc_from_stats(stats: ProbeStats, ranks: Sequence[int] = RANKS) -> dict[int, float]:
    r = stats.rank[stats.mated]
    return {int(k): float(np.mean(r <= k)) if r.size else float("nan") for k in ranks}


def map_from_stats(stats: ProbeStats) -> float:
    ap = stats.ap[stats.mated]
    return float(ap.mean()) if ap.size else float("nan")


# ------------------------------------------------------------ identification
def cmc(scores: np.ndarray, probe_ids: Ids, gallery_ids: Ids, ranks: Sequence[int] = RANKS) -> dict[int, float]:
    """Fraction of mated probes whose best mate ranks within ``k`` (ties pessimistic).

    Reference: Moon & Phillips 2001, cumulative match characteristic; brute force in tests.
    """
    return cmc_from_stats(probe_stats(scores, probe_ids, gallery_ids), ranks)


def mean_average_precision(scores: np.ndarray, probe_ids: Ids, gallery_ids: Ids) -> float:
    """Mean over mated probes of the average precision of their gallery ranking.

    Reference: per probe equal to ``sklearn.metrics.average_precision_score`` (Zheng et al. 2015 mAP).
    """
    return map_from_stats(probe_stats(scores, probe_ids, gallery_ids))


def identification_metrics(
    probe_emb: np.ndarray,
    probe_ids: Ids,
    gallery_emb: np.ndarray,
    gallery_ids: Ids,
    ranks: Sequence[int] = RANKS,
) -> dict:
    """``{"cmc": {k: rate}, "map": float}`` from L2-normalised embeddings without the full score matrix.

    Reference: identical to :func:`cmc` and :func:`mean_average_precision` on ``probe_emb @ gallery_emb.T``.
    """
    stats = embedding_probe_stats(probe_emb, probe_ids, gallery_emb, gallery_ids)
    return {"cmc": cmc_from_stats(stats, ranks), "map": map_from_stats(stats)}


# --------------------------------------------------------------- verification
def reject_threshold(impostor: np.ndarray, rate: float) -> float:
    """Score ``u`` such that accepting ``score > u`` gives the largest false-accept rate ≤ ``rate``."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]
    n = imp.size
    k = int(np.floor(rate * n)) if n else 0  # false accepts allowed, fixed up for float rounding
    while k + 1 <= n and (k + 1) / n <= rate:
        k += 1
    while k > 0 and k / n > rate:
        k -= 1
    return float(imp[k]) if k < n else -np.inf


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)`` at every distinct score (accept ``score >= threshold``), from (0, 0).

    Reference: ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    gen, imp = np.asarray(genuine, np.float64).ravel(), np.asarray(impostor, np.float64).ravel()
    if gen.size == 0 or imp.size == 0:
        raise ValueError("a ROC needs at least one genuine and one impostor score")
    s = np.concatenate([gen, imp])
    y = np.concatenate([np.ones(gen.size), np.zeros(imp.size)])
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each tie group
    tps, fps = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    return np.r_[0.0, fps / imp.size], np.r_[0.0, tps / gen.size], np.r_[np.inf, s[last]]


def det_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, frr, thresholds)``: the ROC with the false-reject rate ``1 − tar``.

    Reference: ISO/IEC 19795-1 detection error trade-off.
    """
    far, tar, thr = roc_curve(genuine, impostor)
    return far, 1.0 - tar, thr


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC (trapezoids; ties give the diagonal). Reference: ``sklearn.metrics.roc_auc_score``."""
    far, tar, _ = roc_curve(genuine, impostor)
    return float(np.trapezoid(tar, far))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float] = FARS) -> dict[float, float]:
    """True-accept rate at each false-accept rate (``score > u``, see module doc).

    Reference: ``max(tpr[fpr <= far])`` of ``sklearn.metrics.roc_curve``.
    """
    gen = np.asarray(genuine, np.float64).ravel()
    if gen.size == 0:
        return {float(f): float("nan") for f in fars}
    return {float(f): float(np.mean(gen > reject_threshold(impostor, f))) for f in fars}


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: where FAR = FRR on the linearly interpolated ROC.

    Reference: ISO/IEC 19795-1; brute-force interpolation of sklearn's ROC in tests.
    """
    far, frr, _ = det_curve(genuine, impostor)
    d = far - frr  # non-decreasing from −1 to +1
    i = int(np.argmax(d >= 0))
    if d[i] == 0:
        return float(far[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


# ---------------------------------------------------------------- open set
def tpir_from_stats(stats: ProbeStats, fpirs: Sequence[float] = FPIRS, rank: int = 20) -> dict[float, float]:
    mated = stats.mated
    unmated_top = stats.top_score[~mated]
    out = {}
    for f in fpirs:
        u = reject_threshold(unmated_top, f)
        hit = (stats.rank[mated] <= rank) & (stats.mate_score[mated] > u)
        out[float(f)] = float(hit.mean()) if hit.size else float("nan")
    return out


def dir_from_stats(stats: ProbeStats, fars: Sequence[float] = DIR_FARS) -> dict[float, float]:
    """Detection and identification rate: :func:`tpir_from_stats` at rank 1 (see :func:`dir_at_far`)."""
    return tpir_from_stats(stats, fars, rank=1)


def dir_at_far(
    scores: np.ndarray,
    probe_ids: Ids,
    gallery_ids: Ids,
    fars: Sequence[float] = DIR_FARS,
) -> dict[float, float]:
    """Share of mated probes identified at rank 1 *and* accepted, at each false-alarm rate.

    The false-alarm rate is the share of non-mated probes whose top score is
    accepted (``> u``, threshold as in the module doc); the denominator of DIR
    is every mated probe. Equal to TPIR@FPIR with ``rank=1``.
    Reference: Phillips, Grother & Micheals, Handbook of Face Recognition 2011
    (open-set identification, DIR vs FAR); brute force in tests.
    """
    return dir_from_stats(probe_stats(scores, probe_ids, gallery_ids), fars)


def tpir_at_fpir(
    scores: np.ndarray,
    probe_ids: Ids,
    gallery_ids: Ids,
    fpirs: Sequence[float] = FPIRS,
    rank: int = 20,
) -> dict[float, float]:
    """Open-set true-positive identification rate at each false-positive identification rate.

    A probe whose id is absent from the gallery is non-mated; the threshold
    ``u`` is set on non-mated probes' top scores (FPIR = share with top score
    > u); a mated probe counts when its best mate has rank ≤ ``rank`` and
    score > ``u``.
    Reference: Grother et al., NIST IR 8238 (FNIR/FPIR); Cheng et al. 2018 QMUL-SurvFace.
    """
    return tpir_from_stats(probe_stats(scores, probe_ids, gallery_ids), fpirs, rank)


# ------------------------------------------------------------------- quality
REJECT_RATIOS = np.linspace(0, 0.95, 20)
"""Default rejected shares for :func:`erc`: 0, 0.05, …, 0.95 (read-only)."""
REJECT_RATIOS.flags.writeable = False


def erc(
    scores: np.ndarray,
    is_genuine: np.ndarray,
    pair_quality: np.ndarray,
    fmr: float = 1e-3,
    reject_ratios: np.ndarray = REJECT_RATIOS,
    fixed_threshold: bool = True,
) -> np.ndarray:
    """FNMR after rejecting the lowest-quality ``r`` share of all pairs, for each ``r``.

    ``floor(r·N)`` pairs are rejected in ascending quality (ties: input order);
    FNMR is over the remaining genuine pairs (nan when none remain). The
    threshold meets ``fmr`` on all impostors (``fixed_threshold``, ISO EDC) or
    on the remaining ones (CR-FIQA-style ERC).
    Reference: Grother & Tabassi 2007 (ERC); ISO/IEC 29794-1:2024 (EDC).
    """
    s = np.asarray(scores, np.float64).ravel()
    gen = np.asarray(is_genuine, bool).ravel()
    order = np.argsort(np.asarray(pair_quality, np.float64).ravel(), kind="stable")
    s, gen = s[order], gen[order]
    u_all = reject_threshold(s[~gen], fmr)
    out = np.empty(len(reject_ratios))
    for i, r in enumerate(reject_ratios):
        keep = slice(int(np.floor(r * s.size + 1e-9)), None)
        sk, gk = s[keep], gen[keep]
        u = u_all if fixed_threshold else reject_threshold(sk[~gk], fmr)
        out[i] = np.mean(sk[gk] <= u) if gk.any() else np.nan
    return out


def edc_pauc(
    scores: np.ndarray,
    is_genuine: np.ndarray,
    pair_quality: np.ndarray,
    fmr: float = 1e-3,
    reject_limit: float = 0.2,
    steps: int = 101,
    fixed_threshold: bool = True,
) -> float:
    """Area under the EDC/ERC from 0 to ``reject_limit`` rejected (trapezoids on ``steps`` points).

    Lower is better. Reference: Schlett et al. 2022, "Considerations on the
    evaluation of biometric quality assessment algorithms" (pAUC).
    """
    ratios = np.linspace(0.0, reject_limit, steps)
    return float(np.trapezoid(erc(scores, is_genuine, pair_quality, fmr, ratios, fixed_threshold), ratios))
