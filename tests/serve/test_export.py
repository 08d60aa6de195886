"""ONNX export: ONNX Runtime must give PyTorch's numbers (issue #7: ≤ 1e-4 max abs, batch 1 and 7)."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vlrface.checkpoint import atomic_save, load_model, make_checkpoint
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing
from vlrface.serve.app import FaceService
from vlrface.serve.export import export_onnx
from vlrface.serve.gallery import atomic_write

PLAIN_MODEL = {"backbone": "iresnet_nano", "embedding_size": 16, "pam": False, "prm": False}


@pytest.fixture(scope="module")
def plain_ckpt(tmp_path_factory):
    """A tiny model without PAM and PRM, fed BGR (so the exported convention must say so)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("plain") / "plain.pt"
    atomic_save(
        make_checkpoint(
            model=build_model(PLAIN_MODEL).eval(),
            config={"model": PLAIN_MODEL},
            preprocessing=Preprocessing(color="BGR"),
        ),
        path,
    )
    return path


@pytest.mark.parametrize("which, outputs", [("ckpt", ["embedding", "quality"]), ("plain_ckpt", ["embedding"])])
def test_onnx_runtime_matches_pytorch_batch_1_and_7(which, outputs, request, tmp_path, cli):
    ckpt = request.getfixturevalue(which)
    path = tmp_path / "out" / "m.onnx"  # parent folder created
    code, out, err = cli(["export", "--ckpt", ckpt, "--onnx", path])
    assert code == 0, err
    assert "max abs difference" in out and list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == outputs
    shapes = [
        [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in [*proto.graph.input, *proto.graph.output]
    ]
    assert shapes == [["batch", 3, 112, 112], ["batch", 16], ["batch"]][: len(shapes)]
    _, pre, _ = load_model(ckpt)
    props = {p.key: p.value for p in proto.metadata_props}
    assert Preprocessing.from_dict(json.loads(props["preprocessing"])) == pre and len(props["checkpoint_sha256"]) == 64

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    service = FaceService(ckpt)
    for b in (1, 7):
        faces = list(rng.integers(0, 256, (b, 112, 112, 3), dtype=np.uint8))
        got = sess.run(None, {"input": pre.to_tensor(faces).numpy()})
        emb, q = service.encode(faces)  # the service's own path: same preprocessing, same model call
        assert got[0].shape == (b, 16) and np.abs(got[0] - emb).max() < 1e-4
        np.testing.assert_allclose(np.linalg.norm(got[0], axis=1), 1, atol=1e-5)
        if "quality" in outputs:
            assert got[1].shape == (b,) and np.abs(got[1] - q).max() < 1e-4
        else:
            assert np.isnan(q).all()


def test_flip_is_baked_into_the_graph(ckpt, tmp_path):
    model, pre, _ = load_model(ckpt)
    path = tmp_path / "flip.onnx"
    export_onnx(model, path, pre, flip=True)
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    emb, q = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    ref_emb, ref_q = model.infer(x, flip=True)
    assert np.abs(emb - ref_emb.numpy()).max() < 1e-4 and np.abs(q - ref_q.numpy()).max() < 1e-4
    assert np.abs(emb - model.infer(x)[0].numpy()).max() > 1e-3  # flip really changes the answer
    assert model.training is False  # export leaves the model in eval mode


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ckpt", "missing.pt", "--onnx", "m.onnx"], "checkpoint not found"),
        (["--onnx", "m.txt"], "must end in .onnx"),
        (["--onnx", "."], "must end in .onnx"),
        (["--onnx", "dir.onnx"], "is a folder"),
        (["--onnx", "file.bin/m.onnx"], "cannot create the folder"),
        (["--onnx", "m.onnx", "--opset", "9"], "--opset 9 is too old"),
        (["--onnx", "m.onnx", "--opset", "99"], "--opset 99: Unsupported onnx_opset_version"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(ckpt, tmp_path, monkeypatch, cli, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "file.bin").write_bytes(b"x")
    code, _, err = cli(["export", "--ckpt", ckpt, *args])
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous model")

    def half_then_crash(f):
        f.write(b"half a mod")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"previous model" and list(tmp_path.iterdir()) == [path]


def test_bench_infer_uses_the_same_exporter():
    from vlrface.bench.infer import run as bench_infer

    row = bench_infer(["iresnet_nano"], batch_sizes=(2,), seconds=0.01)[0]
    assert float(row["max_abs_diff"]) < 1e-4 and row["onnxrt_img_per_s"] > 0
