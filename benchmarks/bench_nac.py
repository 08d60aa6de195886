r"""Issue #9: NAC vs max-cosine for open-set identification, off-the-shelf SFace.

    OMP_NUM_THREADS=1 python benchmarks/bench_nac.py --lfw ../shared/data/lfw \
        --att ../shared/data/att_faces --out runs/bench-nac

On ``lfw-vlr-open`` and ``att-vlr-open`` (30 % of the test people, seeded,
out of the gallery; their probes are non-mated) at HR and 16/12/8 px probes:
DIR@FAR 1e-1 / 1e-2 and TPIR20@FPIR 0.1 for the ``cosine`` matcher, NAC at the
paper's T = 1, and NAC at the T chosen on a *validation* open-set split built
the same way from lfw-vlr *training* people (test people are never used to
pick anything). Writes ``results.json`` and ``results.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from vlrface.data.readers import LFW_VLR_MIN_IMAGES, lfw_vlr_split, read_image_folder
from vlrface.eval.embed import EmbeddingCache, ImageSet, ModelEmbedder
from vlrface.eval.matchers import MATCHERS
from vlrface.eval.protocols import PROTOCOLS, held_out_people, identify, setting_name
from vlrface.models import build_model
from vlrface.models.backbones.sface import SFACE_PREPROCESSING

SIZES = [None, 16, 12, 8]
TEMPERATURES = (1.0, 0.3, 0.1, 0.03)
VAL_PEOPLE, VAL_PROBES = 100, 5


def sface_embedder(cache: Path) -> ModelEmbedder:
    model = build_model({"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False})
    return ModelEmbedder(
        model, SFACE_PREPROCESSING, progress=False, cache=EmbeddingCache(cache), model_key="sface-off-the-shelf"
    )


def validation_split(lfw: Path) -> tuple[list[Path], list[str], list[Path], list[str]]:
    """lfw-vlr *training* people with ≥ 5 images (seeded 100): first image gallery, next ≤ 5 probes, 30 % held out."""
    train, _ = lfw_vlr_split(lfw)
    people = read_image_folder(lfw).select(train)
    files: dict[str, list[Path]] = {}
    for p, y in zip(people.paths, people.labels):
        files.setdefault(people.names[y], []).append(p)
    pool = sorted(n for n, f in files.items() if len(f) >= LFW_VLR_MIN_IMAGES)
    chosen = sorted(pool[i] for i in np.random.default_rng(1).choice(len(pool), VAL_PEOPLE, replace=False))
    out = held_out_people(chosen)
    gallery, gids, probes, pids = [], [], [], []
    for name in chosen:
        f = sorted(files[name], key=lambda p: p.name)
        if name not in out:
            gallery.append(f[0])
            gids.append(name)
        probes += f[1 : 1 + VAL_PROBES]
        pids += [name] * len(f[1 : 1 + VAL_PROBES])
    return gallery, gids, probes, pids


def pick_temperature(embed: ModelEmbedder, lfw: Path) -> tuple[float, dict]:
    """The T with the best mean DIR@FAR (1e-1 and 1e-2, all probe sizes) on the validation split."""
    gallery, gids, probes, pids = validation_split(lfw)
    g = embed(ImageSet(tuple(gallery), "lfw"))
    embedded = {s: embed(ImageSet(tuple(probes), "lfw", s)) for s in SIZES}
    table = {}
    for t in TEMPERATURES:
        dirs = [
            v
            for s in SIZES
            for v in identify(g, gids, embedded[s], pids, matcher=MATCHERS.build("nac", temperature=t))["open_set"][
                "dir_at_far"
            ].values()
        ]
        table[t] = float(np.mean(dirs))
    return max(table, key=table.get), table


def figures(res: dict) -> dict:
    o = res["open_set"]
    return {
        "rank1": res["cmc"][1],
        "dir@far=1e-1": o["dir_at_far"][0.1],
        "dir@far=1e-2": o["dir_at_far"][0.01],
        "tpir20@fpir=0.1": o["tpir_at_fpir"][0.1],
        "n_mated": res["n_mated"],
        "n_unmated": o["n_unmated"],
    }


def run(lfw: Path, att: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    embed = sface_embedder(out / "cache")
    with torch.inference_mode():
        t_val, val = pick_temperature(embed, lfw)
        matchers = {"cosine": {}, "nac T=1": {"temperature": 1.0}, f"nac T={t_val:g} (val)": {"temperature": t_val}}
        results: dict = {}
        for proto_name, root in (("lfw-vlr-open", lfw), ("att-vlr-open", att)):
            proto = PROTOCOLS.build(proto_name).load(root)
            for label, params in matchers.items():
                name = "cosine" if label == "cosine" else "nac"
                res = proto.run(embed, SIZES, MATCHERS.build(name, **params))
                results.setdefault(proto_name, {})[label] = {s: figures(r) for s, r in res.items()}
    return {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "model": "SFace off the shelf (OpenCV Zoo, 128-d)",
        "validation": {"people": VAL_PEOPLE, "probes_each": VAL_PROBES, "mean_dir_by_T": val, "chosen_T": t_val},
        "results": results,
        "seconds": time.perf_counter() - t0,
    }


def table(r: dict) -> str:
    lines = []
    for proto, by_matcher in r["results"].items():
        any_res = next(iter(by_matcher.values()))
        n = any_res["hr"]
        lines += [
            f"\n**{proto}** ({n['n_mated']} mated + {n['n_unmated']} non-mated probes per setting)\n",
            "| matcher | "
            + " | ".join(f"{s}: DIR@1e-1 / DIR@1e-2 / TPIR20@0.1" for s in (setting_name(x) for x in SIZES))
            + " |",
            "|---|" + "---|" * len(SIZES),
        ]
        for label, by_size in by_matcher.items():
            cells = [
                f"{100 * f['dir@far=1e-1']:.1f} / {100 * f['dir@far=1e-2']:.1f} / {100 * f['tpir20@fpir=0.1']:.1f}"
                for f in (by_size[setting_name(x)] for x in SIZES)
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, required=True)
    ap.add_argument("--att", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    r = run(a.lfw, a.att, a.out)
    (a.out / "results.json").write_text(json.dumps(r, indent=1))
    md = table(r)
    (a.out / "results.md").write_text(md)
    print(json.dumps(r["validation"]), md, f"{r['seconds']:.0f} s", sep="\n")


if __name__ == "__main__":
    main()
