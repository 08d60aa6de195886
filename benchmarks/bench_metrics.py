"""CMC + mAP at TinyFace scale, chunked: wall time and peak memory.

TinyFace test: 3,728 probes, 4,443 mated gallery images + 153,428 distractors
(157,871 × 512-d float32). Embeddings are synthetic (identity centre + noise)
so the figures are about speed and memory, not accuracy.

    python benchmarks/bench_metrics.py [--threads 2] [--probes 3728] [--gallery 157871]

Peak memory is the process's maximum resident set size (``ru_maxrss``),
which includes Python, torch and the 323 MB gallery itself.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from vlrface.eval.metrics import identification_metrics


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_data(n_probe: int, n_match: int, n_gallery: int, n_ids: int, dim: int, noise: float = 2.5, seed: int = 0):
    """Unit vectors: mated items share an identity centre; distractors are independent."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    gallery = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    gallery_ids = np.arange(n_gallery) + n_ids  # distractors: unique ids nobody probes
    match_ids = rng.integers(0, n_ids, n_match)
    gallery[:n_match] = centres[match_ids] + noise * gallery[:n_match]
    gallery_ids[:n_match] = match_ids
    probe_ids = rng.choice(np.unique(match_ids), n_probe)
    probes = centres[probe_ids] + noise * rng.standard_normal((n_probe, dim), dtype=np.float32)
    for a in (gallery, probes):
        a /= np.linalg.norm(a, axis=1, keepdims=True)
    return probes, probe_ids, gallery, gallery_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probes", type=int, default=3728)
    ap.add_argument("--match", type=int, default=4443)
    ap.add_argument("--gallery", type=int, default=157871)
    ap.add_argument("--ids", type=int, default=1500)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = rss_mb()
    probes, probe_ids, gallery, gallery_ids = make_data(args.probes, args.match, args.gallery, args.ids, args.dim)
    data_mb = rss_mb()
    t0 = time.perf_counter()
    res = identification_metrics(probes, probe_ids, gallery, gallery_ids)
    dt = time.perf_counter() - t0
    print(f"probes {args.probes} x gallery {args.gallery} x {args.dim}-d, {args.threads} threads")
    print(f"rank-1 {res['cmc'][1]:.4f}  rank-20 {res['cmc'][20]:.4f}  mAP {res['map']:.4f}")
    print(f"time {dt:.1f} s")
    print(f"peak RSS {rss_mb():.0f} MB (python+torch {base:.0f} MB, after data {data_mb:.0f} MB)")


if __name__ == "__main__":
    main()
