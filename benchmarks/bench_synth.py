"""Synthetic face rendering throughput on one core: ``python benchmarks/bench_synth.py [N]``."""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2

from vlrface.data.synth import SynthFaces


def main(n: int = 2000) -> None:
    cv2.setNumThreads(1)
    faces = SynthFaces(seed=0)
    faces.render(0, 0)  # warm-up
    t0 = time.perf_counter()
    for k in range(n):
        faces.render(k % 500, k)
    rate = n / (time.perf_counter() - t0)
    print(f"synth render: {rate:.0f} img/s on one core ({n} images, 112x112 RGB)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
