"""The frozen-trunk recipe: the split is exact, memoised evaluation is exact,
training moves only the top and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from vlrface.config import load_config
from vlrface.data.datasets import build_train_data
from vlrface.errors import UserError
from vlrface.models import build_model
from vlrface.models.face_model import FaceOutput
from vlrface.train.trunk_cache import CachedTrunkTrainer, MemoTrunk, TopModel, TrunkCache, split_backbone

SFACE = {"backbone": "sface", "embedding_size": 16, "pam": True, "prm": True, "backbone_kwargs": {"pretrained": False}}


def _model():
    torch.manual_seed(0)
    return build_model(SFACE).eval()


def test_trunk_then_top_is_the_whole_model():
    model = _model()
    x = torch.randn(2, 3, 112, 112)
    trunk, _ = split_backbone(model, 11)
    with torch.no_grad():
        whole, parts = model(x), TopModel(model, 11)(trunk(x))
    torch.testing.assert_close(parts.embedding, whole.embedding)
    torch.testing.assert_close(parts.quality, whole.quality)


def test_split_errors():
    with pytest.raises(UserError, match="out of range"):
        split_backbone(_model(), 14)
    nano = build_model({"backbone": "iresnet_nano", "embedding_size": 16})
    with pytest.raises(UserError, match="no stem/blocks"):
        split_backbone(nano, 1)


def test_memo_trunk_is_exact_and_runs_the_trunk_once_per_batch():
    model, memo = _model(), {}
    wrapped = MemoTrunk(model, 12, memo).eval()
    x, y = torch.rand(2, 3, 112, 112), torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        first = wrapped(x).embedding
        wrapped(x)
        assert len(memo) == 1
        wrapped(y)
        assert len(memo) == 2
        # trunk output is stored in bf16: close to, not bit-equal with, the float model
        torch.testing.assert_close(first, model(x).embedding, rtol=0.05, atol=0.05)
        emb, q = wrapped.infer(x, flip=True)  # what ModelEmbedder calls
        ref_emb, ref_q = model.infer(x, flip=True)
        assert torch.nn.functional.cosine_similarity(emb, ref_emb).min() > 0.999 and q.shape == ref_q.shape


def _config(tmp_path, name: str, ri: bool, *extra: str):
    return load_config(
        "demo",
        [
            f"out={tmp_path / name}",
            "seed=3",
            "model.backbone=sface",
            "model.embedding_size=16",
            "model.backbone_kwargs={pretrained: false}",
            f"model.pam={str(ri).lower()}",
            f"model.prm={str(ri).lower()}",
            f"ri.enabled={str(ri).lower()}",
            "ri.ui_every=2",
            "data.num_identities=4",
            "data.images_per_identity=3",
            "data.ui.size=4",
            "train.steps=4",
            "train.batch_size=6",
            "train.ckpt_every=0",
            "train.device=cpu",
            "eval.protocols=[]",
            "model.init=sface",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("c"), "cache", ri=True)
    return TrunkCache.build(_model(), build_train_data(cfg.data, cfg.seed), cfg, start=12, variants=2, batch_size=5)


def test_cache_shapes(cache):
    assert cache.features.shape[:2] == (2, 12) and cache.ui.shape[0] == 4
    assert not torch.equal(cache.features[0], cache.features[1])  # the VLR copy differs from HR


def test_cache_framing_jitter_reframes_every_copy_and_is_seeded(tmp_path):
    """data.jitter (off by default) re-frames every cached copy, HR included, reproducibly.

    Built at block 2, where the untrained test network's activations are still O(1e-3), not rounding noise.
    """
    cfg = _config(tmp_path, "j", ri=True)
    model = _model()
    assert not cfg.data.jitter.enabled

    def build():
        return TrunkCache.build(model, build_train_data(cfg.data, cfg.seed), cfg, start=2, variants=2, batch_size=5)

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    off = build()
    cfg.data.jitter.scale, cfg.data.jitter.shift, cfg.data.jitter.rotate = 0.15, 0.08, 8.0
    on, again = build(), build()
    assert rel(on.features[0], again.features[0]) < 1e-3  # seeded
    for v in range(2):
        assert rel(on.features[v], off.features[v]) > 0.1


def test_cache_save_load_and_subset(cache, tmp_path):
    cache.save(tmp_path / "c.pt")
    back = TrunkCache.load(tmp_path / "c.pt")
    assert back.start == cache.start and torch.equal(back.features, cache.features) and torch.equal(back.ui, cache.ui)
    sub = back.subset(torch.tensor([3, 0]))
    assert torch.equal(sub.features[:, 1], cache.features[:, 0]) and sub.features.shape[1] == 2
    with pytest.raises(UserError, match="no trunk cache"):
        TrunkCache.load(tmp_path / "missing.pt")


def test_only_the_top_trains_and_resume_is_exact(tmp_path, cache):
    full = CachedTrunkTrainer(_config(tmp_path, "full", ri=True), cache, progress=False)
    trunk_before = [p.clone() for p in split_backbone(full.model, 12)[0].parameters()]
    top_before = [p.clone() for p in full.top.parameters()]
    full.fit()
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, split_backbone(full.model, 12)[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(top_before, full.top.parameters()))
    half = CachedTrunkTrainer(_config(tmp_path, "half", ri=True), cache, progress=False)
    half.fit(stop_at=2)
    resumed = CachedTrunkTrainer(_config(tmp_path, "half", ri=True), cache, progress=False)
    assert resumed.step == 2
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------- cross-resolution term and one-image people (issue 16)
def _singles_data(cfg):
    """Synthetic one-image people, identities disjoint from the fixture's."""
    other = cfg.data.__class__(**{**cfg.data.__dict__, "identity_offset": 50, "num_identities": 5})
    other.images_per_identity = 1
    return build_train_data(other, cfg.seed)


@pytest.fixture(scope="module")
def singles_cache(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("s"), "cache", ri=True)
    data = build_train_data(cfg.data, cfg.seed)
    return TrunkCache.build(
        _model(), data, cfg, start=12, variants=3, singles=_singles_data(cfg), batch_size=5, dtype=torch.float16
    )


def test_cache_targets_are_the_pretrained_hr_embeddings(cache, tmp_path):
    cfg = _config(tmp_path, "t", ri=True)
    data = build_train_data(cfg.data, cfg.seed)
    images, _ = next(data.batches(12, start_step=0))
    rows = torch.from_numpy(data.positions(12, 0))
    model = _model()
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model(model.backbone.preprocessing.normalize(images)).embedding, dim=1)
    assert cache.targets is not None and cache.targets.shape == (12, 16) and cache.targets.dtype == torch.float32
    # the trunk output is rounded to bf16 before the top runs: close, not equal
    assert torch.nn.functional.cosine_similarity(cache.targets[rows], ref).min() > 0.99


def test_cache_with_singles_in_fp16(singles_cache, tmp_path):
    c = singles_cache
    assert c.features.dtype == c.ui.dtype == c.singles.dtype == torch.float16
    assert c.features.shape[:2] == (3, 12) and c.singles.shape[:2] == (3, 5) and c.singles_targets.shape == (5, 16)
    c.save(tmp_path / "s.pt")
    back = TrunkCache.load(tmp_path / "s.pt")
    assert torch.equal(back.singles, c.singles) and torch.equal(back.singles_targets, c.singles_targets)
    sub = back.subset(torch.tensor([4, 1]))
    assert torch.equal(sub.targets, c.targets[[4, 1]]) and torch.equal(sub.singles, back.singles)  # singles: all kept


def test_a_cache_from_before_targets_still_loads(cache, tmp_path):
    torch.save({"start": cache.start, "features": cache.features, "ui": cache.ui}, tmp_path / "old.pt")
    old = TrunkCache.load(tmp_path / "old.pt")
    assert old.targets is None and old.singles is None
    with pytest.raises(UserError, match="predates"):
        CachedTrunkTrainer(_config(tmp_path, "x", False, "train.cross_res=1.0"), old, progress=False)


def test_cross_res_and_singles_need_the_cached_trainer(tmp_path, cache):
    from vlrface.train.trainer import Trainer

    cfg = _config(tmp_path, "p", False, "train.cross_res=1.0")
    with pytest.raises(UserError, match="cached-trunk trainer"):
        Trainer(cfg, progress=False)
    cfg.data.singles = str(tmp_path)  # the fixture cache has no singles
    with pytest.raises(UserError, match="built with the singles"):
        CachedTrunkTrainer(cfg, cache, progress=False)
    cfg.train.cross_res = 0.0
    with pytest.raises(UserError, match="cross_res > 0"):
        CachedTrunkTrainer(cfg, cache, progress=False)


def test_cross_res_term_by_hand(tmp_path, cache):
    cfg = _config(tmp_path, "h", False, "train.cross_res=2.0")
    trainer = CachedTrunkTrainer(cfg, cache, progress=False)
    e1, e2 = torch.eye(16)[0], torch.eye(16)[1]
    trainer.step_targets = torch.stack([e1, e1])
    out = FaceOutput(embedding=torch.stack([3 * e1, e2 + e1]), plain=torch.zeros(2, 16), quality=None, attention=None)
    loss, logs = trainer.aux_loss(out)
    # 1 − cos: 0 for the first row, 1 − 1/√2 for the second; mean · weight 2
    gap = (1 - 2**-0.5) / 2
    assert logs["cross_res"] == pytest.approx(gap) and float(loss) == pytest.approx(2 * gap)
    cfg.train.cross_res = 0.0
    assert trainer.aux_loss(out) == (None, {})


def test_singles_train_through_cross_res_and_resume_exactly(tmp_path, singles_cache):
    def cfg(name):
        singles = ("train.cross_res=1.0", "train.singles_per_batch=3", f"data.singles={tmp_path}")
        return _config(tmp_path, name, True, *singles)

    full = CachedTrunkTrainer(cfg("full"), singles_cache, progress=False)
    full.fit()
    assert full.step_singles is not None and full.step_singles[0].shape[0] == 3
    logged = [r for r in full.history if "cross_res" in r]
    assert logged and all(0 <= r["cross_res"] <= 2 for r in logged)
    summary = (tmp_path / "full" / "summary.json").read_text()
    assert '"cross_res"' in summary
    half = CachedTrunkTrainer(cfg("half"), singles_cache, progress=False)
    half.fit(stop_at=2)
    resumed = CachedTrunkTrainer(cfg("half"), singles_cache, progress=False)
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_memo_trunk_rounds_as_the_cache_does():
    model, memo = _model(), {}
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        MemoTrunk(model, 12, memo, torch.float16).eval()(x)
        MemoTrunk(model, 12, memo).eval()(x)  # bf16: its own entry, never the fp16 one
    assert sorted(str(t.dtype) for t in memo.values()) == ["torch.bfloat16", "torch.float16"]
