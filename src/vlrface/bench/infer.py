"""CPU inference throughput at 112×112: PyTorch eager vs ONNX Runtime, batch 1 and 32.

The deployed graph is the full :class:`FaceModel` (PAM + PRM: embedding and
quality), exported inside the run by :func:`vlrface.serve.export.export_onnx`,
the same code as ``vlrface export``. Timing: repeated
calls for ``seconds`` after a warm-up, median per call → img/s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..models import build_model
from ..serve.export import export_onnx


def _median_call(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm-up
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(models: list[str], batch_sizes: tuple[int, ...] = (1, 32), seconds: float = 3.0) -> list[dict]:
    import onnxruntime as ort

    rows = []
    threads = torch.get_num_threads()
    for name in models:
        torch.manual_seed(0)
        model = build_model({"backbone": name}).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for b in batch_sizes:
            x = torch.rand(b, 3, 112, 112) * 2 - 1
            with torch.inference_mode():
                eager = _median_call(partial(model, x), seconds)
                ref = model.infer(x)[0].numpy()
            feed = {"input": x.numpy()}
            onnx = _median_call(partial(sess.run, None, feed), seconds)
            diff = float(np.abs(sess.run(None, feed)[0] - ref).max())
            rows.append(
                {
                    "model": name,
                    "batch": b,
                    "threads": threads,
                    "eager_img_per_s": round(b / eager, 1),
                    "onnxrt_img_per_s": round(b / onnx, 1),
                    "onnx_speedup": round(eager / onnx, 2),
                    "max_abs_diff": f"{diff:.1e}",
                    "load_avg_1min": round(os.getloadavg()[0], 2),
                }
            )
    return rows
