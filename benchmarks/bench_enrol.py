r"""Issue #9: few-shot enrolment into off-the-shelf SFace, 1 and 5 shots.

    OMP_NUM_THREADS=1 python benchmarks/bench_enrol.py --lfw ../shared/data/lfw \
        --att ../shared/data/att_faces --out runs/bench-enrol

New identities = test people only: att-vlr subjects 21–40 (shots = images
1…n, queries = images 6–10) and lfw-vlr test people with ≥ 6 images (shots =
the first n by file name, queries = the next ≤ 10 after the fifth), so the
1-shot and 5-shot rows answer the same queries. Rank-1 of the queries at HR,
16 and 8 px for:

* ``gallery (no FT)`` — the shots as a plain gallery, max cosine per identity;
* ``imprint`` — cosine to the imprinted class rows (normalised mean of the shots);
* ``imprint + BN-FT`` — the same rows after BN-affine-only fine-tuning
  (``vlrface enrol`` defaults: 20 steps, Adam 1e-3), queries re-embedded;
* ``gallery after BN-FT`` — the shots re-embedded by the fine-tuned model.

Nothing is tuned here: the enrolment defaults were fixed beforehand.
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

from vlrface.data.readers import lfw_vlr_split, read_att, read_image_folder
from vlrface.eval import metrics as M
from vlrface.eval.embed import EmbeddingCache, ImageSet, ModelEmbedder, load_faces
from vlrface.eval.matchers import MATCHERS
from vlrface.models import build_model
from vlrface.models.backbones.sface import SFACE_PREPROCESSING
from vlrface.train.enrol import Shots, enrol_shots, enrolled_scores

SIZES = [None, 16, 8]
SHOTS = (1, 5)
STEPS, BATCH = 20, 32
SFACE = {"backbone": "sface", "embedding_size": 128, "pam": False, "prm": False}


def att_people(root: Path) -> dict[str, list[Path]]:
    images = read_att(root, range(21, 41))
    files: dict[str, list[Path]] = {}
    for p, y in zip(images.paths, images.labels):
        files.setdefault(images.names[y], []).append(p)
    return {n: sorted(f, key=lambda p: int(p.stem)) for n, f in files.items()}


def lfw_people(root: Path) -> dict[str, list[Path]]:
    _, test = lfw_vlr_split(root)
    images = read_image_folder(root).select(test)
    files: dict[str, list[Path]] = {}
    for p, y in zip(images.paths, images.labels):
        files.setdefault(images.names[y], []).append(p)
    return {n: sorted(f, key=lambda p: p.name) for n, f in files.items() if len(f) >= 6}


def rank1(scores: np.ndarray, query_ids: list[str], names: list[str]) -> float:
    return M.cmc(scores, query_ids, names, (1,))[1]


def embedder(model, cache: Path | None, key: str) -> ModelEmbedder:
    return ModelEmbedder(
        model, SFACE_PREPROCESSING, progress=False, cache=EmbeddingCache(cache) if cache else None, model_key=key
    )


def one_set(people: dict[str, list[Path]], crop: str, cache: Path) -> dict:
    names = sorted(people)
    queries = [p for n in names for p in people[n][5:15]]
    query_ids = [n for n in names for _ in people[n][5:15]]
    base = embedder(build_model(SFACE).eval(), cache, "sface-off-the-shelf")
    q0 = {s: base(ImageSet(tuple(queries), crop, s)).emb for s in SIZES}
    out: dict = {"identities": len(names), "queries": len(queries)}
    for n in SHOTS:
        paths = [p for name in names for p in people[name][:n]]
        labels = torch.tensor([i for i, name in enumerate(names) for _ in people[name][:n]])
        x, ok = load_faces(paths, crop, None)
        assert ok.all(), "unreadable shot"
        shots = Shots(x, labels, names)
        shot_ids = [names[y] for y in labels.tolist()]
        g0 = base(ImageSet(tuple(paths), crop)).emb
        cosine = MATCHERS.build("cosine").fit(g0, shot_ids)
        rows = {"gallery (no FT)": {s: rank1(cosine.scores(q0[s]), query_ids, cosine.identities) for s in SIZES}}
        imprinted = enrol_shots(build_model(SFACE), SFACE_PREPROCESSING, shots, steps=0)
        rows["imprint"] = {s: rank1(enrolled_scores(q0[s], imprinted), query_ids, names) for s in SIZES}
        t0 = time.perf_counter()
        tuned = enrol_shots(build_model(SFACE), SFACE_PREPROCESSING, shots, steps=STEPS, batch_size=BATCH)
        ft_seconds = time.perf_counter() - t0
        ft = embedder(tuned.model, None, "")
        q1 = {s: ft(ImageSet(tuple(queries), crop, s)).emb for s in SIZES}
        rows["imprint + BN-FT"] = {s: rank1(enrolled_scores(q1[s], tuned), query_ids, names) for s in SIZES}
        cosine_ft = MATCHERS.build("cosine").fit(ft(ImageSet(tuple(paths), crop)).emb, shot_ids)
        rows["gallery after BN-FT"] = {
            s: rank1(cosine_ft.scores(q1[s]), query_ids, cosine_ft.identities) for s in SIZES
        }
        out[f"{n}-shot"] = {
            "rows": {k: {("hr" if s is None else f"{s}px"): v for s, v in r.items()} for k, r in rows.items()},
            "ft_loss_first_last": [tuned.losses[0], tuned.losses[-1]],
            "ft_seconds": ft_seconds,
        }
        print(n, "shot", json.dumps(out[f"{n}-shot"]), flush=True)
    return out


def table(results: dict) -> str:
    cols = ["hr" if s is None else f"{s}px" for s in SIZES]
    lines = []
    for set_name, r in results.items():
        lines += [
            f"\n**{set_name}** ({r['identities']} new identities, {r['queries']} queries per probe size; rank-1 %)\n",
            "| method | " + " | ".join(f"{n}-shot {c}" for n in SHOTS for c in cols) + " |",
            "|---|" + "---|" * (len(SHOTS) * len(cols)),
        ]
        for method in r[f"{SHOTS[0]}-shot"]["rows"]:
            cells = [f"{100 * r[f'{n}-shot']['rows'][method][c]:.1f}" for n in SHOTS for c in cols]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, required=True)
    ap.add_argument("--att", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--cache", type=Path, default=None, help="Embedding cache of the off-the-shelf model (shared with bench_nac)."
    )
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    results = {
        "att-vlr": one_set(att_people(a.att), "att", a.cache or a.out / "cache"),
        "lfw-vlr": one_set(lfw_people(a.lfw), "lfw", a.cache or a.out / "cache"),
    }
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "steps": STEPS,
        "batch": BATCH,
        "seconds": time.perf_counter() - t0,
    }
    (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = table(results)
    (a.out / "results.md").write_text(md)
    print(md, json.dumps(meta), sep="\n")


if __name__ == "__main__":
    main()
