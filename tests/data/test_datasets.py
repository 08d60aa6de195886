"""TrainData: deterministic, exactly resumable batches; labels; UI images; data kinds."""

import re
import threading

import pytest
import torch

import vlrface.data.datasets as datasets
from vlrface.config import DataConfig, UIConfig
from vlrface.data.datasets import build_train_data, prefetch
from vlrface.errors import UserError


def synth_cfg(**kw) -> DataConfig:
    return DataConfig(kind="synth", num_identities=5, images_per_identity=4, **kw)


def take(data, batch_size: int, start: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    it = data.batches(batch_size, start_step=start)
    return [next(it) for _ in range(n)]


def test_batches_deterministic_and_resumable():
    a = take(build_train_data(synth_cfg(), seed=1), 6, 0, 8)  # 20 images: batches cross epochs
    b = take(build_train_data(synth_cfg(), seed=1), 6, 5, 3)
    for (xa, ya), (xb, yb) in zip(a[5:], b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x, y = a[0]
    assert x.shape == (6, 3, 112, 112) and x.dtype == torch.float32 and y.dtype == torch.long
    assert 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() < 5
    other = take(build_train_data(synth_cfg(), seed=2), 6, 0, 1)[0]
    assert not torch.equal(other[0], x)


def test_each_epoch_is_a_permutation():
    data = build_train_data(synth_cfg(), seed=0)
    labels = torch.cat([y for _, y in take(data, 5, 0, 8)])  # two epochs of 20
    for epoch in labels.reshape(2, 20):
        assert torch.equal(torch.bincount(epoch, minlength=5), torch.full((5,), 4))
    assert not torch.equal(labels[:20], labels[20:])  # reshuffled each epoch


def test_lazy_loader_gives_the_same_batches(monkeypatch):
    cached = take(build_train_data(synth_cfg(), seed=3), 7, 2, 3)
    monkeypatch.setattr(datasets, "CACHE_BYTES", 0)
    lazy_data = build_train_data(synth_cfg(num_workers=1), seed=3)
    assert lazy_data._cache is None
    for (xa, ya), (xb, yb) in zip(cached, take(lazy_data, 7, 2, 3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_read_ahead_gives_the_same_batches():
    sync = take(build_train_data(synth_cfg(prefetch=0), seed=4), 6, 1, 5)
    ahead = take(build_train_data(synth_cfg(prefetch=3), seed=4), 6, 1, 5)
    for (xa, ya), (xb, yb) in zip(sync, ahead):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_prefetch_keeps_order_raises_and_stops():
    assert list(prefetch(iter(range(50)), 2)) == list(range(50))
    assert list(prefetch(iter(range(5)), 0)) == list(range(5))

    def broken():
        yield 1
        raise RuntimeError("decoder died")

    it = prefetch(broken(), 2)
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="decoder died"):
        next(it)
    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    before = set(threading.enumerate())
    it = prefetch(endless(), 2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    (worker,) = [t for t in set(threading.enumerate()) - before if t.name == "vlrface-prefetch"]
    it.close()  # the thread stops instead of running ahead forever
    worker.join(timeout=10)  # joined, not slept on: a loaded CI machine may not schedule it within a fixed sleep
    assert not worker.is_alive()
    assert len(made) <= 3 + 2 + 2


def test_synth_identity_offset_gives_other_people():
    a = take(build_train_data(synth_cfg(), seed=0), 20, 0, 1)[0][0]
    b = take(build_train_data(synth_cfg(identity_offset=100), seed=0), 20, 0, 1)[0][0]
    assert not torch.equal(a, b)


def test_ui_images_generated_and_from_folder(tiny_folder, capsys):
    data = build_train_data(synth_cfg(), seed=0)
    ui = data.ui_images(9, seed=4)
    assert ui.shape == (9, 3, 112, 112) and 0 <= ui.min() and ui.max() <= 1
    assert torch.equal(ui, data.ui_images(9, seed=4))
    torch.testing.assert_close(data.ui_images(9, seed=4, device="cpu"), ui)  # made where asked, same draws
    folder = build_train_data(synth_cfg(ui=UIConfig(folder=str(tiny_folder))), seed=0)
    ui = folder.ui_images(10, seed=0)  # 4 readable images, drawn with replacement
    assert ui.shape == (10, 3, 112, 112)
    assert "skipped 2" in capsys.readouterr().err


def test_folder_kind_skips_and_counts_bad_files(tiny_folder, capsys):
    data = build_train_data(DataConfig(kind="folder", root=str(tiny_folder)), seed=0)
    assert data.num_classes == 2 and data.num_images == 4 and len(data.skips) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 2" in err and "broken.jpg" in err
    labels = torch.cat([y for _, y in take(data, 4, 0, 1)])
    assert sorted(labels.tolist()) == [0, 0, 1, 1]


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match=re.escape("data.root is required")):
        build_train_data(DataConfig(kind="folder"), seed=0)
    with pytest.raises(UserError, match="unknown data kind"):
        build_train_data(DataConfig(kind="imagenet"), seed=0)
    with pytest.raises(UserError, match="not found"):
        build_train_data(DataConfig(kind="att", root=str(tmp_path / "nope")), seed=0)


@pytest.mark.shared
def test_att_kind_uses_training_subjects_only(shared):
    data = build_train_data(DataConfig(kind="att", root=str(shared("att_faces"))), seed=0)
    assert data.num_classes == 20 and data.num_images == 200
    assert {p.parent.name for p in data._paths} == {f"s{k}" for k in range(1, 21)}


@pytest.mark.shared
def test_lfw_vlr_kind_excludes_test_people(shared):
    from vlrface.data.readers import lfw_vlr_split

    root = shared("lfw")
    source, paths = datasets.DATA_KINDS.get("lfw-vlr")(DataConfig(kind="lfw-vlr", root=str(root)), 0)
    _, test = lfw_vlr_split(root)
    assert source.num_classes == 5643 and len(paths) == len(source.labels)
    assert not {p.parent.name for p in paths} & set(test)
    assert source.load(0).shape == (112, 112, 3)  # the lfw crop by default
