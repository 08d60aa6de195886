"""VLR degradation time per batch: this tree's ``vlrface.data.degrade`` vs an older revision's.

    python benchmarks/bench_degrade.py [--device cuda] [--old-rev 7bf9499] [--json OUT.json]

The old implementation is read from git (``git show REV:src/vlrface/data/degrade.py``)
and imported as a sibling module, so both run in the same process on the same
inputs. Median of ``--reps`` calls after 3 warm-up calls, device synchronised
around each call. Cases: ``random_vlr`` with the default ``VLRConfig`` (the
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
from vlrface.train.config import VLRConfig

ROOT = Path(__file__).resolve().parent.parent


def old_module(rev: str) -> types.ModuleType:
    """``vlrface.data.degrade`` as it was at git revision ``rev``."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/vlrface/data/degrade.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("vlrface.data._degrade_old")
    mod.__package__ = "vlrface.data"
    exec(compile(src, f"{rev}:degrade.py", "exec"), mod.__dict__)
    return mod


def cases(mod: types.ModuleType, device: torch.device) -> dict[str, Callable[[], object]]:
    vlr = VLRConfig()
    x128, x512, x256 = (torch.rand(b, 3, 112, 112, device=device) for b in (128, 512, 256))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return {
        "random_vlr b128": lambda: mod.random_vlr(x128, vlr, g()),
        "random_vlr b512": lambda: mod.random_vlr(x512, vlr, g()),
        "make_ui b256": lambda: mod.make_ui(x256, g()),
        "degrade b512 16px bicubic": lambda: mod.degrade(x512, 16, "bicubic"),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--old-rev", default="7bf9499", help="git revision of the per-group implementation")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    device = torch.device(a.device)
    new = importlib.import_module("vlrface.data.degrade")  # the package re-exports a function of that name
    impls = {"old": old_module(a.old_rev), "new": new}
    rows = []
    for name in cases(new, device):
        row = {"case": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "threads": torch.get_num_threads()}
        for label, mod in impls.items():
            fn = cases(mod, device)[name]
            for _ in range(3):
                fn()
            row[f"{label}_ms"] = round(statistics.median(timed(fn, device) for _ in range(a.reps)) * 1e3, 2)
        row["speedup"] = round(row["old_ms"] / row["new_ms"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
