"""Gallery search at TinyFace scale: FAISS ``IndexFlatIP`` vs NumPy matmul + argpartition.

Both are exact top-k by inner product on L2-normalised float32 vectors. The
time is set against the machine's matrix-multiply rate measured in the same
run (a large ``sgemm`` through NumPy's BLAS): search FLOPs = ``2·P·G·D``, so
``flops / time / sgemm_rate`` is the fraction of the machine's peak the
search reaches. The NumPy baseline scores probes in chunks so the full
``P×G`` matrix (2.4 GB at TinyFace scale) is never held.
"""

from __future__ import annotations

import os
import time

import numpy as np

CHUNK = 256  # probes per NumPy chunk: a 256 × G score block


def sgemm_gflops(n: int = 4096, reps: int = 3) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def numpy_topk(probes: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(probes), k), dtype=np.int64)
    scores = np.empty((len(probes), k), dtype=np.float32)
    for s in range(0, len(probes), CHUNK):
        block = probes[s : s + CHUNK] @ gallery.T
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(block, part, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids[s : s + CHUNK] = np.take_along_axis(part, order, 1)
        scores[s : s + CHUNK] = np.take_along_axis(top, order, 1)
    return scores, ids


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run(probes: int = 3_728, gallery: int = 157_871, dim: int = 512, top: int = 20, sgemm_n: int = 4096) -> dict:
    import faiss

    rng = np.random.default_rng(0)
    g, p = _unit(rng, gallery, dim), _unit(rng, probes, dim)
    peak = sgemm_gflops(sgemm_n)
    flops = 2.0 * probes * gallery * dim

    t = time.perf_counter()
    np_scores, np_ids = numpy_topk(p, g, top)
    t_np = time.perf_counter() - t

    index = faiss.IndexFlatIP(dim)
    t = time.perf_counter()
    index.add(g)
    t_add = time.perf_counter() - t
    t = time.perf_counter()
    f_scores, f_ids = index.search(p, top)
    t_faiss = time.perf_counter() - t

    agree = float(np.mean([len(set(a) & set(b)) / top for a, b in zip(np_ids, f_ids)]))
    return {
        "probes": probes,
        "gallery": gallery,
        "dim": dim,
        "top": top,
        "faiss_threads": faiss.omp_get_max_threads(),
        "sgemm_gflops": round(peak, 1),
        "search_gflop": round(flops / 1e9, 1),
        "numpy_s": round(t_np, 2),
        "numpy_frac_of_sgemm": round(flops / t_np / 1e9 / peak, 3),
        "faiss_s": round(t_faiss, 2),
        "faiss_frac_of_sgemm": round(flops / t_faiss / 1e9 / peak, 3),
        "faiss_add_s": round(t_add, 3),
        "faiss_speedup": round(t_np / t_faiss, 2),
        "top_k_agreement": round(agree, 4),
        "max_score_diff": float(np.abs(np_scores - f_scores).max()),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
