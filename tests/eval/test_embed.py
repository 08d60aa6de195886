"""Embedders: raw-pixel baseline, model embeddings with flip, PRM quality and the on-disk cache."""

import os

import numpy as np
import pytest
import torch

from vlrface.data.readers import SkipReport
from vlrface.eval.embed import EmbeddingCache, ImageSet, ModelEmbedder, RawPixelEmbedder, load_faces
from vlrface.models import build_model
from vlrface.preprocess import Preprocessing


@pytest.fixture
def files(tmp_path, write_face):
    paths = [write_face(tmp_path / f"{i}.png", i, 0) for i in range(3)]
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    return [*paths, tmp_path / "bad.jpg"]


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model(
        {"backbone": "iresnet_nano", "embedding_size": 16, "backbone_kwargs": {"widths": [4, 8, 8, 8]}}
    ).eval()


def test_raw_pixel_is_normalised_correlation(files):
    skips = SkipReport()
    e = RawPixelEmbedder(skips=skips)(ImageSet(tuple(files)))
    assert e.emb.shape == (4, 32 * 32) and e.quality is None
    np.testing.assert_allclose(np.linalg.norm(e.emb[:3], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(e.emb[:3].sum(1), 0, atol=1e-4)  # mean removed
    assert not e.emb[3].any() and len(skips) == 1  # unreadable: zero row, counted


def test_model_embedder_flip_and_quality(files, tiny_model):
    images = ImageSet(tuple(files[:3]), size=12)
    plain = ModelEmbedder(tiny_model, Preprocessing(), progress=False)(images)
    flipped = ModelEmbedder(tiny_model, Preprocessing(), flip=True, progress=False)(images)
    assert plain.quality.shape == (3,) and np.isfinite(plain.quality).all()
    x, _ = load_faces(files[:3], "default", 12)
    with torch.no_grad():
        pre = Preprocessing()
        want = torch.nn.functional.normalize(
            tiny_model(pre.normalize(x)).embedding + tiny_model(pre.normalize(x.flip(3))).embedding, dim=1
        )
    np.testing.assert_allclose(flipped.emb, want.numpy(), atol=1e-5)
    assert not np.allclose(plain.emb, flipped.emb)


def test_cache_skips_extraction_and_tracks_file_changes(files, tiny_model, tmp_path, monkeypatch, write_face):
    cache = EmbeddingCache(tmp_path / "cache")
    emb = ModelEmbedder(tiny_model, Preprocessing(), cache=cache, model_key="m1", progress=False)
    images = ImageSet(tuple(files))
    first = emb(images)
    calls = []
    real = emb._extract
    monkeypatch.setattr(emb, "_extract", lambda s: calls.append(len(s)) or real(s))
    again = emb(images)
    assert calls == [] and np.array_equal(first.emb, again.emb)
    np.testing.assert_array_equal(first.quality, again.quality)
    write_face(files[0], 7, 7)  # content (mtime/size) changes → only that file is re-embedded
    os.utime(files[0], ns=(1, 1))
    emb(images)
    assert calls == [1]
    emb(ImageSet(tuple(files), size=8))  # another probe size is another cache entry
    assert calls == [1, 4]
