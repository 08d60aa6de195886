"""No file vlrface reads can run code: every loader × a crafted pickle whose ``__reduce__`` calls ``os.system``.

The crafted files are the issue's repro (``pickle.dumps`` of such an object, protocol 4 and protocol 2) and
the same object saved by ``torch.save`` beside a tensor (zip format: the path the importer's Lightning
fallback reads). A loader passes when the marker file the command would create does not appear and the
file is refused with a one-line :class:`UserError` (the embedding cache, a cache, treats it as a miss).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import vlrface
from vlrface.checkpoint import atomic_save, load_checkpoint, load_model
from vlrface.config import load_config
from vlrface.errors import UserError
from vlrface.eval.embed import EmbeddingCache
from vlrface.models.convert import import_adaface, import_insightface
from vlrface.models.pretrained import read_weights
from vlrface.safeload import TENSORS_ONLY, load_tensors
from vlrface.serve.gallery import Gallery
from vlrface.train.trainer import Trainer
from vlrface.train.trunk_cache import TrunkCache


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(kind: str, path: Path, marker: Path) -> Path:
    if kind == "pickle":  # the file: pickle.dumps (protocol 4)
        path.write_bytes(pickle.dumps(Evil(marker)))
    elif kind == "pickle-protocol-2":  # no FRAME opcode: the unpickler reaches the GLOBAL itself
        path.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    else:  # zip format, code beside a real tensor
        torch.save({"conv1.weight": torch.zeros(1), "payload": Evil(marker)}, path)
    return path


def _gallery(tmp: Path, crafted: Path) -> None:
    g = Gallery(4)
    g.add(np.eye(4), list("abcd"))
    g.save(tmp / "g")
    snap = json.loads((tmp / "g" / "gallery.json").read_text())["snapshot"]
    (tmp / "g" / snap / "vectors.npy").write_bytes(crafted.read_bytes())
    Gallery.load(tmp / "g")


def _embedding_cache(tmp: Path, crafted: Path) -> None:
    cache = EmbeddingCache(tmp / "cache")
    cache.root.mkdir()
    cache._file("ns").write_bytes(crafted.read_bytes())
    assert cache.load("ns") == {}  # a cache: a damaged file is a miss, rewritten at the next save


def _resume(tmp: Path, crafted: Path) -> None:
    out = tmp / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(crafted.read_bytes())
    cfg = load_config(
        None,
        [
            f"out={out}",
            "data.num_identities=3",
            "data.images_per_identity=2",
            "model.backbone=iresnet_nano",
            "model.embedding_size=16",
            "train.batch_size=4",
            "train.device=cpu",
        ],
    )
    Trainer(cfg, progress=False)


LOADERS = {
    "load_tensors": lambda tmp, f: load_tensors(f),
    "load_tensors(foreign_ok)": lambda tmp, f: load_tensors(f, foreign_ok=True),
    "load_checkpoint": lambda tmp, f: load_checkpoint(f),
    "load_model": lambda tmp, f: load_model(f),
    "import_insightface": lambda tmp, f: import_insightface(f),
    "import_adaface": lambda tmp, f: import_adaface(f),
    "Gallery.load": _gallery,
    "TrunkCache.load": lambda tmp, f: TrunkCache.load(f),
    "EmbeddingCache.load": _embedding_cache,
    "Trainer.resume": _resume,
    "read_weights": lambda tmp, f: read_weights(f, hashlib.sha256(f.read_bytes()).hexdigest()),  # digest matches
}


@pytest.mark.parametrize("kind", ["pickle", "pickle-protocol-2", "torch-zip"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_crafted_pickle_runs_nothing_in_any_loader(tmp_path, loader, kind):
    marker = tmp_path / "MARKER"
    crafted = craft(kind, tmp_path / "evil.pth", marker)
    try:
        LOADERS[loader](tmp_path, crafted)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert loader == "EmbeddingCache.load", "the crafted file was accepted"
    assert not marker.exists(), f"{loader} ran the pickle's code"


def test_the_refusal_names_what_was_refused(tmp_path):
    marker = tmp_path / "MARKER"
    with pytest.raises(UserError, match=r"holds Python objects besides tensors \(posix\.system\); refused"):
        load_tensors(craft("pickle-protocol-2", tmp_path / "a.pt", marker))
    with pytest.raises(UserError, match=r"not a PyTorch tensor file .* nothing in it was run"):
        load_tensors(craft("pickle", tmp_path / "b.pt", marker))
    with pytest.raises(UserError, match=r"\(posix\.system\); refused"):  # a blocked module: never stubbed
        load_tensors(craft("torch-zip", tmp_path / "c.pt", marker), foreign_ok=True)
    # published weights: other classes (Lightning's hyper-parameters) are read as inert stubs
    torch.save({"w": torch.ones(2), "hparams": argparse.Namespace(arch="ir_18")}, tmp_path / "d.ckpt")
    obj = load_tensors(tmp_path / "d.ckpt", foreign_ok=True)
    assert torch.equal(obj["w"], torch.ones(2)) and obj["hparams"] == {}
    with pytest.raises(UserError, match=r"\(argparse\.Namespace\); refused"):
        load_tensors(tmp_path / "d.ckpt")  # a checkpoint never holds them
    # the stubbing unpickler itself, handed the code-carrying file: a stub, the code never runs
    obj = torch.load(tmp_path / "c.pt", weights_only=False, pickle_module=TENSORS_ONLY)
    assert torch.equal(obj["conv1.weight"], torch.zeros(1)) and obj["payload"] == {}
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty (0 bytes)"),
        (None, "not a complete PyTorch file"),  # a real checkpoint cut in half
        (b"PK\x03\x04 not really a zip", "not a complete PyTorch file"),
        (b"plain text", "not a PyTorch tensor file"),
    ],
)
def test_damaged_files_are_one_whole_line(tmp_path, ckpt, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2] if content is None else content)
    with pytest.raises(UserError, match=re.escape(message)) as e:
        load_checkpoint(path)
    text = str(e.value)
    assert "\n" not in text and not text.endswith(("…", ",")) and len(text) < 300  # whole sentences, not cut


def test_trunk_cache_of_another_shape_is_refused(tmp_path):
    atomic_save({"start": 3}, tmp_path / "c.pt")
    with pytest.raises(UserError, match="not a trunk cache"):
        TrunkCache.load(tmp_path / "c.pt")


def test_nothing_but_safeload_unpickles():
    """Source scan (calls, not prose): torch.load, pickle.load(s) and Unpicklers live in vlrface/safeload.py only;
    nothing passes allow_pickle=True."""
    package = Path(vlrface.__file__).parent
    unpickling = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler")}
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = (f.value.id, f.attr) if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
            if name in unpickling and path.name != "safeload.py":
                offenders.append(f"{path.relative_to(package)}:{node.lineno} {'.'.join(name)}")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    offenders.append(f"{path.relative_to(package)}:{node.lineno} allow_pickle")
    assert offenders == []
