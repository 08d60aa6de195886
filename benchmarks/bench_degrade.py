"""VLR degradation time per batch: this tree's ``vlrface.data.degrade`` vs an older revision's.

    python benchmarks/bench_degrade.py [--device cuda] [--old 7bf9499 | --old FILE.py] [--json OUT.json]

The old implementation is read from git (``git show REV:src/vlrface/data/degrade.py``),
or from a file holding that text where there is no ``.git`` (a device machine
gets the working tree only), and imported as a sibling module, so both run in
the same process on the same inputs. Median of ``--reps`` calls after 3 warm-up calls, old and new calls
alternating, device synchronised around each call. Cases: ``random_vlr`` with the default ``VLRConfig`` (the
training step's data path) at batch 128 and 512, ``make_ui`` at 256 (the UI
refresh) and a single-size bicubic ``degrade`` (the evaluation probes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import types
from collections.abc import Callable
from pathlib import Path

import torch

from vlrface.bench.train import timed
from vlrface.config import VLRConfig

ROOT = Path(__file__).resolve().parent.parent


def old_module(old: str) -> types.ModuleType:
    """``vlrface.data.degrade`` as it was at git revision ``old`` (or as saved in the file ``old``)."""
    if Path(old).is_file():
        src = Path(old).read_text()
    else:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{old}:src/vlrface/data/degrade.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    mod = types.ModuleType("vlrface.data._degrade_old")
    mod.__package__ = "vlrface.data"
    exec(compile(src, f"{old}:degrade.py", "exec"), mod.__dict__)
    return mod


def inputs(device: torch.device) -> dict[int, torch.Tensor]:
    """Random 112×112 batches by size, made once and shared by both implementations."""
    return {b: torch.rand(b, 3, 112, 112, device=device) for b in (128, 256, 512)}


def cases(mod: types.ModuleType, x: dict[int, torch.Tensor]) -> dict[str, Callable[[], object]]:
    vlr = VLRConfig()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return {
        "random_vlr b128": lambda: mod.random_vlr(x[128], vlr, g()),
        "random_vlr b512": lambda: mod.random_vlr(x[512], vlr, g()),
        "make_ui b256": lambda: mod.make_ui(x[256], g()),
        "degrade b512 16px bicubic": lambda: mod.degrade(x[512], 16, "bicubic"),
    }


def compare(impls: dict[str, types.ModuleType], device: torch.device, reps: int) -> list[dict]:
    """Median ms per case and implementation; calls alternate, so all see the same load on a shared machine."""
    x = inputs(device)
    rows = []
    for name in cases(impls["new"], x):
        row: dict = {
            "case": name,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
        }
        fns = {label: cases(mod, x)[name] for label, mod in impls.items()}
        times: dict[str, list[float]] = {label: [] for label in fns}
        for rep in range(3 + reps):
            for label, fn in fns.items():
                t = timed(fn, device)
                if rep >= 3:  # the first three are warm-up
                    times[label].append(t)
        for label, t in times.items():
            row[f"{label}_ms"] = round(statistics.median(t) * 1e3, 2)
        row["speedup"] = round(row["old_ms"] / row["new_ms"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--old", default="7bf9499", help="git revision (or saved file) of the per-group implementation")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    new = importlib.import_module("vlrface.data.degrade")  # the package re-exports a function of that name
    rows = compare({"old": old_module(a.old), "new": new}, torch.device(a.device), a.reps)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
