"""The bad-input matrix: what a hostile or careless user sends is refused cleanly, never half-done.

* CLI: every verb × {missing path, empty file, zero-byte / truncated / foreign checkpoint, malicious
  pickle, wrong protocol layout, out-of-range numbers, unknown keys, bad device} → exit 2, one line on
  stderr (``vlrface: error: …``), no traceback (the in-process ``cli`` fixture would see the exception),
  nothing written, and the malicious pickle's code never runs.
* HTTP: every route × {garbage, empty, truncated image, decompression bomb, huge numbers, nan, odd
  names} → a 4xx with a JSON ``detail``; no 5xx; nothing enrolled.

Each table row is one case; the expected text pins *which* check refused it. The matrix runs on the
tiny checkpoint and a few small files, in seconds.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vlrface.config import load_config
from vlrface.serve.gallery import Gallery
from vlrface.train.trainer import Trainer

TINY_TRAIN = [
    "data.num_identities=3",
    "data.images_per_identity=2",
    "data.ui.size=8",
    "model.backbone=iresnet_nano",
    "model.embedding_size=16",
    "train.batch_size=4",
    "train.steps=2",
    "train.device=cpu",
]


class Evil:
    """The issue's file: unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _face(path: Path, seed: int, size: int = 48) -> None:
    img = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ckpt) -> Path:
    """Everything the cases read: faces, broken checkpoints, a gallery, AT&T and LFW layouts, runs to resume."""
    i = tmp_path_factory.mktemp("inputs")
    for who, seed in (("ann", 1), ("ben", 2), ("cat", 3)):
        _face(i / "faces" / who / f"{seed}.png", seed)
    for s in range(1, 41):  # ORL/AT&T: sK/N.pgm, 5 images each (enough to pass for LFW's ≥ 5 if unchecked)
        for n in range(1, 6):
            (i / "att" / f"s{s}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(i / "att" / f"s{s}" / f"{n}.pgm"), np.full((112, 92), 10 * n, np.uint8))
    _face(i / "lfw" / "Ann_Bee" / "Ann_Bee_0001.jpg", 4, 250)
    (i / "zero.pt").write_bytes(b"")
    (i / "trunc.pt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    torch.save({"weight": torch.zeros(3)}, i / "foreign.pt")
    (i / "evil.pt").write_bytes(pickle.dumps(Evil(i / "MARKER")))
    (i / "empty.yaml").write_bytes(b"")
    (i / "empty.txt").write_bytes(b"")
    (i / "empty.png").write_bytes(b"")
    (i / "unknown_key.yaml").write_text("train:\n  stepz: 3\n")
    (i / "plan_unknown.yaml").write_text("variantz: {}\n")
    (i / "landmarks_nan.txt").write_text("faces/ann/1.png nan 1 2 3 4 5 6 7 8 9\n")
    g = Gallery(16)
    g.add(np.eye(16)[:3], ["ann", "ben", "cat"])
    g.save(i / "gallery")
    g.save(i / "evil_gallery")
    snap = next((i / "evil_gallery").glob("snapshot-*"))
    (snap / "vectors.npy").write_bytes((i / "evil.pt").read_bytes())
    for name, content in (("zero", b""), ("evil", (i / "evil.pt").read_bytes())):  # runs to resume
        (i / f"run_{name}").mkdir()
        (i / f"run_{name}" / "last.pt").write_bytes(content)
    Trainer(load_config(None, [*TINY_TRAIN, f"out={i / 'run_3ids'}"]), progress=False).fit(stop_at=1)
    return i


CKPT = "{ckpt}"
BROKEN = {  # checkpoint case → (path, what the refusal says)
    "missing path": ("{I}/none.pt", "not found"),
    "zero-byte checkpoint": ("{I}/zero.pt", "is empty (0 bytes)"),
    "truncated checkpoint": ("{I}/trunc.pt", "not a complete PyTorch file"),
    "foreign checkpoint": ("{I}/foreign.pt", "not a vlrface checkpoint"),
    "malicious pickle": ("{I}/evil.pt", "nothing in it was run"),
}
# verbs that read a checkpoint: argv with {CK} where the checkpoint goes
CKPT_VERBS = {
    "embed": ["embed", "{I}/faces", "--ckpt", "{CK}", "--out", "{W}/e.npy"],
    "export": ["export", "--ckpt", "{CK}", "--onnx", "{W}/m.onnx", "--no-check"],
    "quality": ["quality", "{I}/faces", "--ckpt", "{CK}", "--method", "ri", "--out", "{W}/q.csv"],
    "identify": ["identify", "--ckpt", "{CK}", "--gallery", "{W}/g", "--build", "{I}/faces"],
    "serve": ["serve", "--ckpt", "{CK}", "--gallery", "{W}/g"],
    "enrol": ["enrol", "--ckpt", "{CK}", "--shots", "{I}/faces", "--out", "{W}/e.pt", "--steps", "0"],
    "eval": ["eval", "--protocol", "att-vlr", "--data", "{I}/att", "--ckpt", "{CK}", "--out", "{W}/ev", "--no-cache"],
    "train (model.init)": ["train", "demo", *TINY_TRAIN, "out={W}/run", "model.init={CK}"],
}
MODEL_VERBS = ("embed", "export", "quality", "identify", "serve", "enrol", "eval")  # --model NAME beside --ckpt


def _named(argv: list[str], *model: str) -> list[str]:
    """``argv`` with ``--ckpt {CK}`` replaced by ``--model NAME`` (or, with two names, both given)."""
    i = argv.index("--ckpt")
    pick = ["--model", model[0]] if len(model) == 1 else ["--ckpt", model[0], "--model", model[1]]
    return [*argv[:i], *pick, *argv[i + 2 :]]


EMBED = ["embed", "{I}/faces", "--ckpt", CKPT, "--out", "{W}/e.npy"]
IDENTIFY = ["identify", "--ckpt", CKPT, "--gallery", "{I}/gallery", "--probe", "{I}/faces"]
SERVE = ["serve", "--ckpt", CKPT, "--gallery", "{W}/g"]
EVAL = ["--ckpt", CKPT, "--out", "{W}/ev", "--no-cache"]  # after "eval --protocol P --data D"
TRAIN = ["train", "demo", *TINY_TRAIN, "out={W}/run"]
ENROL = ["enrol", "--ckpt", CKPT, "--shots", "{I}/faces", "--out", "{W}/e.pt"]
QUALITY = ["quality", "{I}/faces", "--ckpt", CKPT, "--out", "{W}/q.csv"]

# (verb, what is wrong, argv, text the one-line refusal contains)
CLI_CASES: list[tuple[str, str, list[str], str]] = [
    *(
        (verb, kind, [a.replace("{CK}", path) for a in argv], message)
        for verb, argv in CKPT_VERBS.items()
        for kind, (path, message) in BROKEN.items()
    ),
    *(
        ("convert", kind, ["convert", source, path, "{W}/o.pt"], message)
        for source in ("insightface", "adaface")
        for kind, (path, message) in {
            **BROKEN,
            "foreign checkpoint": ("{I}/foreign.pt", "not an"),
            "missing path": ("{I}/none.pt", "weights file not found"),
        }.items()
    ),
    ("convert", "unknown keys", ["convert", "onnx", "{I}/foreign.pt", "{W}/o.pt"], "unknown source 'onnx'"),
    *(
        (verb, "unknown keys", _named(CKPT_VERBS[verb], "bogus"), "unknown pretrained model 'bogus'")
        for verb in MODEL_VERBS
    ),
    *(
        (verb, "unknown keys", _named(CKPT_VERBS[verb], CKPT, "sface"), "give exactly one of --ckpt PATH and --model")
        for verb in MODEL_VERBS
    ),
    # train: config, data layout, resume
    ("train", "missing path", ["train", "{I}/none.yaml"], "config file not found"),
    ("train", "empty file", ["train", "{I}/empty.yaml"], "is empty"),
    ("train", "unknown keys", ["train", "{I}/unknown_key.yaml"], "unknown config key 'train.stepz'"),
    ("train", "unknown keys", [*TRAIN, "trian.steps=3"], "did you mean 'train'"),
    ("train", "unknown keys", [*TRAIN, "head.kwargs.bogus=1"], "head 'arcface' has no option 'bogus'"),
    ("train", "unknown keys", [*TRAIN, "model.backbone_kwargs.bogus=1"], "has no option 'bogus'"),
    ("train", "unknown keys", [*TRAIN, "model.backbone=resnet9000"], "unknown backbone 'resnet9000'"),
    ("train", "out-of-range numbers", [*TRAIN, "train.steps=-5"], "'train.steps' must be ≥ 1, got -5"),
    ("train", "out-of-range numbers", [*TRAIN, "train.batch_size=0"], "'train.batch_size' must be ≥ 1"),
    ("train", "out-of-range numbers", [*TRAIN, "data.vlr.prob=1.5"], "'data.vlr.prob' must be ≤ 1"),
    ("train", "out-of-range numbers", [*TRAIN, "optim.lr=.nan"], "'optim.lr' must be a finite number"),
    ("train", "out-of-range numbers", [*TRAIN, "train.log_every=0"], "'train.log_every' must be ≥ 1"),
    ("train", "out-of-range numbers", [*TRAIN, "ri.ui_every=0"], "'ri.ui_every' must be ≥ 1"),
    ("train", "bad device", [*TRAIN, "train.device=nope"], "train.device=nope is not a torch device"),
    ("train", "bad device", [*TRAIN, "train.device=cuda:99"], "train.device=cuda:99"),
    ("train", "wrong protocol layout", [*TRAIN, "data.kind=lfw-vlr", "data.root={I}/att"], "not in LFW's layout"),
    (
        "train",
        "wrong protocol layout",
        [*TRAIN, "eval.protocols=[lfw-vlr]", "eval.data.lfw-vlr={I}/att"],
        "not in LFW's layout",
    ),
    ("train", "missing path", [*TRAIN, "data.kind=folder", "data.root={I}/none"], "data.root not found"),
    ("train", "missing path", [*TRAIN, "out={I}/empty.png/run"], "is a file, not a folder"),
    *(
        ("train (resume)", kind, ["train", "demo", *TINY_TRAIN, f"out={{I}}/{run}"], message)
        for kind, run, message in (
            ("zero-byte checkpoint", "run_zero", "is empty (0 bytes)"),
            ("malicious pickle", "run_evil", "nothing in it was run"),
        )
    ),
    (
        "train (resume)",
        "out-of-range numbers",
        ["train", "demo", *TINY_TRAIN, "out={I}/run_3ids", "data.num_identities=4"],
        "was trained on 3 classes but this config's data has 4",
    ),
    # eval
    ("eval", "missing path", ["eval", "--protocol", "att-vlr", "--data", "{I}/none", *EVAL], "data folder not found"),
    ("eval", "wrong protocol layout", ["eval", "--protocol", "lfw-vlr", "--data", "{I}/att", *EVAL], "LFW's layout"),
    ("eval", "wrong protocol layout", ["eval", "--protocol", "att-vlr", "--data", "{I}/lfw", *EVAL], "ORL/AT&T"),
    ("eval", "wrong protocol layout", ["eval", "--protocol", "tinyface", "--data", "{I}/att", *EVAL], "TinyFace"),
    ("eval", "unknown keys", ["eval", "--protocol", "bogus", "--data", "{I}/att", *EVAL], "unknown protocol"),
    (
        "eval",
        "unknown keys",
        ["eval", "--protocol", "att-vlr", "--data", "{I}/att", *EVAL, "--matcher", "knn"],
        "unknown matcher 'knn'",
    ),
    (
        "eval",
        "out-of-range numbers",
        ["eval", "--protocol", "att-vlr", "--data", "{I}/att", *EVAL, "--batch-size", "0"],
        "'--batch-size'",
    ),
    (
        "eval",
        "out-of-range numbers",
        ["eval", "--protocol", "att-vlr", "--data", "{I}/att", *EVAL, "--probe-size", "0"],
        "'--probe-size'",
    ),
    (
        "eval",
        "out-of-range numbers",
        ["eval", "--protocol", "att-vlr", "--data", "{I}/att", *EVAL, "--matcher", "nac", "--nac-temperature", "nan"],
        "'--nac-temperature'",
    ),
    (
        "eval",
        "bad device",
        ["eval", "--protocol", "att-vlr", "--data", "{I}/att", *EVAL, "--device", "nope"],
        "--device=nope is not a torch device",
    ),
    # embed
    ("embed", "missing path", ["embed", "{I}/none", "--ckpt", CKPT, "--out", "{W}/e.npy"], "input not found"),
    ("embed", "empty file", ["embed", "{I}/empty.txt", "--ckpt", CKPT, "--out", "{W}/e.npy"], "no images"),
    ("embed", "empty file", ["embed", "{I}/empty.png", "--ckpt", CKPT, "--out", "{W}/e.npy"], "no usable image"),
    ("embed", "out-of-range numbers", [*EMBED, "--batch-size", "0"], "'--batch-size'"),
    ("embed", "out-of-range numbers", [*EMBED, "--batch-size", "-3"], "'--batch-size'"),
    ("embed", "unknown keys", [*EMBED, "--bogus"], "No such option: --bogus"),
    ("embed", "bad device", [*EMBED, "--device", "nope"], "--device=nope is not a torch device"),
    ("embed", "bad device", [*EMBED, "--device", "cuda:99"], "--device=cuda:99"),
    ("embed", "missing path", ["embed", "{I}/faces", "--ckpt", CKPT, "--out", "{W}/e.txt"], "must end in .npy"),
    # export
    ("export", "out-of-range numbers", ["export", "--ckpt", CKPT, "--onnx", "{W}/m.onnx", "--opset", "0"], "opset"),
    ("export", "unknown keys", ["export", "--ckpt", CKPT, "--onnx", "{W}/m.onnx", "--bogus"], "No such option"),
    # quality
    ("quality", "missing path", ["quality", "{I}/none", "--ckpt", CKPT, "--method", "ri"], "input not found"),
    ("quality", "empty file", ["quality", "{I}/empty.png", "--ckpt", CKPT, "--method", "ri"], "no readable face"),
    ("quality", "unknown keys", [*QUALITY, "--method", "bogus"], "unknown quality scorer 'bogus'"),
    ("quality", "out-of-range numbers", [*QUALITY, "--method", "ri", "--batch-size", "0"], "'--batch-size'"),
    ("quality", "bad device", [*QUALITY, "--method", "ri", "--device", "nope"], "--device=nope"),
    # identify
    ("identify", "missing path", [*IDENTIFY[:4], "{I}/none", "--probe", "{I}/faces"], "no gallery in"),
    ("identify", "missing path", [*IDENTIFY[:6], "{I}/none"], "input not found"),
    ("identify", "empty file", [*IDENTIFY[:6], "{I}/empty.txt"], "no images"),
    ("identify", "malicious pickle", [*IDENTIFY[:4], "{I}/evil_gallery", "--probe", "{I}/faces"], "is damaged"),
    ("identify", "missing path", [*IDENTIFY[:4], "{I}/empty.png", "--build", "{I}/faces"], "is a file"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--top", "0"], "'--top'"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--top", "1000000000000"], "'--top'"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--threshold", "nan"], "'--threshold'"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--threshold", "1e9"], "'--threshold'"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--quality-threshold", "inf"], "'--quality-threshold'"),
    ("identify", "out-of-range numbers", [*IDENTIFY, "--matcher", "nac", "--nac-k", "0"], "'--nac-k'"),
    ("identify", "unknown keys", [*IDENTIFY, "--matcher", "knn"], "unknown matcher 'knn'"),
    ("identify", "unknown keys", [*IDENTIFY[:4], "{W}/g", "--build", "{I}/faces", "--index", "kd"], "unknown gallery"),
    ("identify", "bad device", [*IDENTIFY, "--device", "nope"], "--device=nope"),
    # serve
    ("serve", "missing path", [*SERVE[:3], "--gallery", "{I}/empty.png"], "is a file, not a folder"),
    ("serve", "out-of-range numbers", [*SERVE, "--port", "99999"], "'--port'"),
    ("serve", "out-of-range numbers", [*SERVE, "--port", "0"], "'--port'"),
    ("serve", "out-of-range numbers", [*SERVE, "--max-bytes", "0"], "'--max-bytes'"),
    ("serve", "out-of-range numbers", [*SERVE, "--max-pixels", "-1"], "'--max-pixels'"),
    ("serve", "out-of-range numbers", [*SERVE, "--top", "1000000000"], "'--top'"),
    ("serve", "out-of-range numbers", [*SERVE, "--threshold", "nan"], "'--threshold'"),
    ("serve", "out-of-range numbers", [*SERVE, "--quality-threshold", "-inf"], "'--quality-threshold'"),
    ("serve", "unknown keys", [*SERVE, "--index", "kdtree"], "unknown gallery index 'kdtree'"),
    ("serve", "bad device", [*SERVE, "--device", "nope"], "--device=nope"),
    # align
    ("align", "missing path", ["align", "{I}/none", "--out", "{W}/al"], "input not found"),
    ("align", "empty file", ["align", "{I}/empty.txt", "--out", "{W}/al"], "no images"),
    ("align", "empty file", ["align", "--landmarks", "{I}/empty.txt", "--out", "{W}/al"], "lists no image"),
    ("align", "missing path", ["align", "--landmarks", "{I}/none.txt", "--out", "{W}/al"], "cannot read landmark"),
    ("align", "out-of-range numbers", ["align", "--landmarks", "{I}/landmarks_nan.txt", "--out", "{W}/al"], ":1:"),
    ("align", "unknown keys", ["align", "{I}/faces", "--out", "{W}/al", "--bogus"], "No such option"),
    # enrol
    ("enrol", "missing path", ["enrol", "--ckpt", CKPT, "--shots", "{I}/none", "--out", "{W}/e.pt"], "not found"),
    ("enrol", "out-of-range numbers", [*ENROL, "--steps", "-1"], "'--steps'"),
    ("enrol", "out-of-range numbers", [*ENROL, "--lr", "nan"], "'--lr'"),
    ("enrol", "out-of-range numbers", [*ENROL, "--batch-size", "0"], "'--batch-size'"),
    ("enrol", "out-of-range numbers", [*ENROL, "--max-shots", "0"], "'--max-shots'"),
    ("enrol", "unknown keys", [*ENROL, "--crop", "bogus"], "bogus"),
    ("enrol", "bad device", [*ENROL, "--device", "nope"], "--device=nope"),
    ("enrol", "missing path", [*ENROL, "--gallery", "{I}/empty.png"], "is a file, not a folder"),
    # bench (refused before any timing starts)
    ("bench", "unknown keys", ["bench", "nosuch"], "unknown benchmark 'nosuch'"),
    ("bench", "unknown keys", ["bench", "train", "--amp", "fp8"], "--amp 'fp8'"),
    ("bench", "out-of-range numbers", ["bench", "train", "--steps", "0"], "'--steps'"),
    ("bench", "out-of-range numbers", ["bench", "train", "--batch-size", "0"], "'--batch-size'"),
    ("bench", "out-of-range numbers", ["bench", "train", "--partial-fc-rate", "2"], "'--partial-fc-rate'"),
    ("bench", "out-of-range numbers", ["bench", "infer", "--seconds", "nan"], "'--seconds'"),
    ("bench", "out-of-range numbers", ["bench", "search", "--top", "0"], "'--top'"),
    ("bench", "out-of-range numbers", ["bench", "search", "--gallery", "-1"], "'--gallery'"),
    # demo, ablate (refused before any training)
    ("demo", "missing path", ["demo", "--att", "{I}/none", "--out", "{W}/demo"], "--att folder not found"),
    ("demo", "missing path", ["demo", "--quick", "--out", "{I}/empty.png"], "is a file, not a folder"),
    ("demo", "unknown keys", ["demo", "--bogus"], "No such option"),
    ("ablate", "missing path", ["ablate", "--plan", "{I}/none.yaml", "--out", "{W}/ab"], "config file not found"),
    ("ablate", "empty file", ["ablate", "--plan", "{I}/empty.yaml", "--out", "{W}/ab"], "is empty"),
    ("ablate", "unknown keys", ["ablate", "--plan", "{I}/plan_unknown.yaml", "--out", "{W}/ab"], "variantz"),
    ("ablate", "unknown keys", ["ablate", "--datasets", "nope", "--out", "{W}/ab"], "unknown dataset 'nope'"),
    ("ablate", "out-of-range numbers", ["ablate", "--seeds", "a,b", "--out", "{W}/ab"], "--seeds"),
    ("ablate", "out-of-range numbers", ["ablate", "--seeds", "-1", "--out", "{W}/ab"], "'seed' must be ≥ 0"),
    ("models", "unknown keys", ["models", "--bogus"], "No such option: --bogus"),
    # the command itself
    ("vlrface", "unknown keys", ["nosuchverb"], "No such command 'nosuchverb'"),
    ("vlrface", "unknown keys", ["--bogus"], "No such option: --bogus"),
    ("vlrface", "missing path", ["embed", "--ckpt"], "requires an argument"),
]


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under the roots with its size and mtime: 'nothing written' is this unchanged."""
    out = {}
    for root in roots:
        for p in root.rglob("*"):
            st = p.lstat()
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


@pytest.mark.parametrize(
    "verb, kind, argv, message", CLI_CASES, ids=[f"{v}-{k}-{i}" for i, (v, k, *_) in enumerate(CLI_CASES)]
)
def test_cli_refuses_bad_input_with_one_line(verb, kind, argv, message, inputs, ckpt, tmp_path, cli, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server would have started"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{I}", str(inputs)).replace("{W}", str(work)).replace("{ckpt}", str(ckpt)) for a in argv]
    before = _tree(inputs, work)
    code, _, err = cli(argv)  # an exception other than SystemExit (a traceback) fails here
    assert code == 2, err
    assert err.startswith("vlrface: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert _tree(inputs, work) == before, "something was written"
    assert not (inputs / "MARKER").exists(), "the malicious pickle's code ran"


def test_the_cli_matrix_covers_every_verb_and_kind():
    from vlrface.cli import app

    verbs = {c.name or c.callback.__name__ for c in app.registered_commands}
    covered = {v.split(" ")[0] for v, *_ in CLI_CASES}
    assert verbs <= covered, verbs - covered
    kinds = {k for _, k, *_ in CLI_CASES}
    assert kinds == {
        "missing path",
        "empty file",
        "zero-byte checkpoint",
        "truncated checkpoint",
        "foreign checkpoint",
        "malicious pickle",
        "wrong protocol layout",
        "out-of-range numbers",
        "unknown keys",
        "bad device",
    }


# ------------------------------------------------------------------------------------------------ HTTP
def _png(size: tuple[int, int] = (112, 112), grey: bool = False) -> bytes:
    h, w = size
    img = np.zeros((h, w) if grey else (h, w, 3), np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _jpeg_header(width: int, height: int) -> bytes:
    """A JPEG that is all header: a start-of-frame announcing width × height, then nothing."""
    return b"\xff\xd8\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03" + bytes(9)


GOOD = _png()
IMAGES = {  # what is wrong → (upload bytes or None for no file field, expected status)
    "garbage": (b"\x00\x01garbage, not an image" * 10, 415),
    "garbage (text)": (b"GET / HTTP/1.1\r\n\r\n", 415),
    "empty": (b"", 400),
    "no image field": (None, 422),
    "truncated image": (GOOD[: len(GOOD) // 2], 415),
    "truncated image (header only)": (GOOD[:33], 415),
    "truncated image (JPEG)": (cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()[:300], 415),
    "bomb (7000² PNG, ~50 kB)": (_png((7000, 7000), grey=True), 413),
    "bomb (JPEG header 65535²)": (_jpeg_header(65535, 65535), 413),
    "bomb (PNG header 0×0)": (GOOD[:16] + (0).to_bytes(4, "big") * 2 + GOOD[24:], 415),
}
IMAGE_ROUTES = {"embed": "/embed", "identify": "/identify", "enrol": "/gallery/ann"}
NAMES = {  # odd identity names in the path → status of POST (enrol) and DELETE
    "empty": ("/gallery/", 400, 400),
    "blank": ("/gallery/%20%20", 400, 404),
    "padded": ("/gallery/%20ann", 400, 404),
    "NUL": ("/gallery/a%00b", 400, 404),
    "newline": ("/gallery/a%0Ab", 400, 404),
    "escape sequence": ("/gallery/%1B%5B31m", 400, 404),
    "right-to-left override": ("/gallery/%E2%80%AEann", 400, 404),
    "very long": ("/gallery/" + "x" * 5000, 400, 404),
    "reserved": ("/gallery/unknown", 400, 404),
    "slash inside": ("/gallery/a%2Fb", 404, 404),
    "dot-dot": ("/gallery/..", 404, 404),
}
QUERIES = {  # /identify query → status (numbers: huge, negative, nan, inf, not numbers)
    "top_k huge": ("top_k=1000000000000", 422),
    "top_k 10⁸": ("top_k=100000000", 422),
    "top_k zero": ("top_k=0", 422),
    "top_k negative": ("top_k=-1", 422),
    "top_k nan": ("top_k=nan", 422),
    "top_k text": ("top_k=five", 422),
    "threshold nan": ("threshold=nan", 422),
    "threshold inf": ("threshold=inf", 422),
    "threshold huge": ("threshold=1e308", 422),
    "threshold -huge": ("threshold=-1e9", 422),
    "quality_threshold nan": ("quality_threshold=nan", 422),
    "quality_threshold -inf": ("quality_threshold=-inf", 422),
    "embedding not bool": ("embedding=maybe", 422),
}

HTTP_CASES: list[tuple[str, str, str, str, bytes | None, dict, int]] = [
    # (route, what is wrong, method, url, upload, extra headers, expected status)
    *(
        (route, kind, "POST", url, data, {}, status)
        for route, url in IMAGE_ROUTES.items()
        for kind, (data, status) in IMAGES.items()
    ),
    *(("identify", kind, "POST", f"/identify?{q}", GOOD, {}, status) for kind, (q, status) in QUERIES.items()),
    *(("enrol", f"odd name: {kind}", "POST", url, GOOD, {}, status) for kind, (url, status, _) in NAMES.items()),
    *(("remove", f"odd name: {kind}", "DELETE", url, None, {}, status) for kind, (url, _, status) in NAMES.items()),
    *(
        (route, "huge numbers: Content-Length 10¹⁵", "POST", url, GOOD, {"content-length": str(10**15)}, 413)
        for route, url in IMAGE_ROUTES.items()
    ),
    ("health", "odd path", "GET", "/health/", None, {}, 404),
    ("gallery", "odd path", "GET", "/gallery/", None, {}, 405),
    ("gallery", "wrong method", "PUT", "/gallery", None, {}, 405),
    ("embed", "wrong method", "GET", "/embed", None, {}, 405),
    ("embed", "garbage: not multipart", "POST", "/embed", None, {"content-type": "application/json"}, 422),
    ("identify", "garbage: broken multipart", "POST", "/identify", None, {"content-type": "multipart/form-data"}, 400),
]


@pytest.fixture(scope="module")
def client(ckpt, tmp_path_factory):
    from fastapi.testclient import TestClient

    from vlrface.serve.app import create_app

    app = create_app(ckpt, tmp_path_factory.mktemp("served") / "gallery")
    with TestClient(app, raise_server_exceptions=False) as c:  # a server error comes back as 500, not raised
        yield c


HTTP_STATUSES: list[int] = []


@pytest.mark.parametrize(
    "route, kind, method, url, upload, headers, status",
    HTTP_CASES,
    ids=[f"{r}-{k}" for r, k, *_ in HTTP_CASES],
)
def test_http_refuses_bad_input_with_a_4xx(client, route, kind, method, url, upload, headers, status):
    files = None if upload is None else {"image": ("x.png", upload, "image/png")}
    body = b"{not json" if "content-type" in headers else None
    r = client.request(method, url, files=files, content=body, headers=headers)
    HTTP_STATUSES.append(r.status_code)
    assert r.status_code == status, r.text
    assert 400 <= r.status_code < 500 and isinstance(r.json()["detail"], (str, list))
    listing = client.get("/gallery").json()
    assert listing["entries"] == 0, "a refused request enrolled something"


def test_no_http_case_was_a_server_error():
    """Run after the matrix (same module): how many 5xx it produced, in all."""
    assert HTTP_STATUSES and all(s < 500 for s in HTTP_STATUSES)


def test_the_http_matrix_covers_every_route(client):
    from fastapi.routing import APIRoute

    route_of = {
        "embed": ("POST", "/embed"),
        "identify": ("POST", "/identify"),
        "enrol": ("POST", "/gallery/{identity}"),
        "remove": ("DELETE", "/gallery/{identity}"),
        "health": ("GET", "/health"),
        "gallery": ("GET", "/gallery"),
    }
    served = {
        (m, r.path) for r in client.app.routes if isinstance(r, APIRoute) and r.include_in_schema for m in r.methods
    }
    assert served == set(route_of.values())
    assert {r for r, *_ in HTTP_CASES} == set(route_of)


def test_every_documented_guarantee_names_a_real_test():
    """docs/serving.md and docs/architecture.md list the guarantees with the tests that prove them."""
    import re

    root = Path(__file__).resolve().parents[1]
    for doc in ("docs/serving.md", "docs/architecture.md"):
        text = (root / doc).read_text()
        section = text[text.index("## Guarantees") :]
        file = None
        refs = re.findall(r"`(tests/[\w/]+\.py)?(::\w+)?`", section)
        assert refs, doc
        for path, name in refs:
            file = path or file
            source = (root / file).read_text()
            if name:
                assert f"def {name[2:]}(" in source, f"{doc}: {file}{name} does not exist"
