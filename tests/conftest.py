"""Fixtures shared by the whole suite: the real-data locator, a tiny checkpoint, the CLI in-process."""

from pathlib import Path

import pytest
import torch

from vlrface.checkpoint import atomic_save, make_checkpoint
from vlrface.cli import main
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing

SHARED = Path(__file__).resolve().parents[1] / "../shared/data"
TINY_MODEL = {"backbone": "iresnet_nano", "embedding_size": 16, "pam": True, "prm": True}


@pytest.fixture
def shared():
    """``shared("lfw")`` → the real data folder, or skip the test when it is absent."""

    def locate(name: str) -> Path:
        path = SHARED / name
        if not path.is_dir():
            pytest.skip(f"real data {path} absent (it lives in ../shared/data beside the repo)")
        return path

    return locate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A vlrface checkpoint of a tiny random model (nano backbone, 16-d, PAM + PRM)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    model = build_model(TINY_MODEL).eval()
    atomic_save(make_checkpoint(model=model, config={"model": TINY_MODEL}, preprocessing=Preprocessing()), path)
    return path


@pytest.fixture
def cli(capsys):
    """``cli([verb, *args])`` → ``(exit code, stdout, stderr)`` of the ``vlrface`` command, run in-process."""

    def run(argv) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        out = capsys.readouterr()
        return e.value.code, out.out, out.err

    return run
