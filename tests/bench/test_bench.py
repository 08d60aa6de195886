"""Benchmarks run end to end on tiny inputs and count what they claim (figures live in BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlrface.bench import search, train
from vlrface.cli import main
from vlrface.errors import UserError


def test_flop_counter_counts_a_linear_layer_by_hand():
    layer = torch.nn.Linear(16, 8, bias=False)
    assert train.count_flops(lambda: layer(torch.randn(3, 16))) == 2 * 3 * 16 * 8


def test_train_bench_runs_on_cpu_with_ri_and_partial_fc():
    for ri, rate, data in ((True, 1.0, "device"), (False, 0.5, "loader")):
        row = train.run(
            train.TrainBench(
                model="iresnet_nano",
                ri=ri,
                partial_fc_rate=rate,
                batch_size=4,
                steps=1,
                warmup=1,
                num_classes=10,
                ui_size=8,
                amp="none",
                data=data,
            )
        )
        assert row["img_per_s"] > 0 and row["step_ms"] >= row["compute_ms"] > 0
        assert abs(row["data_ms"] - row["fetch_ms"] - row["degrade_ms"]) <= 0.011  # each rounded to 0.01 ms
        assert row["data"] == data
    with pytest.raises(UserError, match="--data 'disk'"):
        train.run(train.TrainBench(data="disk"))
        assert 0 <= row["data_share"] < 1 and row["mfu"] is None  # no datasheet peak for a CPU
        assert row["gflops_per_img_fwd_bwd"] > 0


def test_numpy_topk_matches_brute_force_sort():
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal((7, 4), dtype=np.float32), rng.standard_normal((50, 4), dtype=np.float32)
    scores, ids = search.numpy_topk(p, g, 5)
    full = p @ g.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(full, ids, 1))


def test_search_bench_agrees_with_faiss():
    row = search.run(probes=20, gallery=300, dim=16, top=5, sgemm_n=256)
    assert row["top_k_agreement"] == 1.0 and row["max_score_diff"] < 1e-5
    assert row["sgemm_gflops"] > 0 and row["search_gflop"] == round(2 * 20 * 300 * 16 / 1e9, 1)


def test_cli_rejects_unknown_benchmark(capsys):
    try:
        main(["bench", "nope"])
    except SystemExit as e:
        assert e.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
