import pickle

import pytest
import torch

from vlrface.checkpoint import atomic_save, load_checkpoint, load_model, make_checkpoint
from vlrface.errors import UserError
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing

MODEL = {"backbone": "iresnet_nano", "embedding_size": 16, "pam": True, "prm": True}


def test_round_trip_rebuilds_model_and_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = build_model(MODEL).eval()
    path = tmp_path / "m.pt"
    atomic_save(
        make_checkpoint(model=model, config={"model": MODEL}, preprocessing=Preprocessing(color="BGR"), step=3), path
    )
    loaded, pre, ckpt = load_model(path)
    x = torch.randn(2, 3, 112, 112)
    assert torch.equal(loaded.embed(x), model.embed(x))
    assert pre.color == "BGR" and ckpt["step"] == 3
    assert not list(tmp_path.glob(".*tmp")), "temp file left behind"


def test_atomic_save_keeps_old_file_when_write_fails(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"format": "x", "v": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # AttributeError before Python 3.14
        atomic_save({"bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert torch.load(path, weights_only=True)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_corrupt_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a vlrface checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
