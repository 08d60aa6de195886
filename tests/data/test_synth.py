"""Synthetic faces: determinism, distinct identities, learnability at high resolution."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlrface.data.synth import FEATURES, SynthFaces


def test_render_shape_and_determinism():
    a, b = SynthFaces(seed=3), SynthFaces(seed=3)
    img = a.render(5, 2)
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    assert np.array_equal(img, b.render(5, 2))
    assert np.array_equal(img, a.render(5, 2))
    assert not np.array_equal(img, a.render(5, 3))  # nuisance depends on the index
    assert not np.array_equal(img, SynthFaces(seed=4).render(5, 2))
    np.testing.assert_array_equal(a.identity(7), b.identity(7))


def test_batch_matches_render():
    s = SynthFaces(seed=1)
    out = s.batch([0, 1, 1], [0, 0, 4])
    assert out.shape == (3, 112, 112, 3)
    for k, (i, j) in enumerate([(0, 0), (1, 0), (1, 4)]):
        np.testing.assert_array_equal(out[k], s.render(i, j))
    with pytest.raises(ValueError):
        s.batch([0, 1], [0])


def test_identities_differ_in_several_features():
    s = SynthFaces(seed=0)
    params = np.stack([s.identity(i) for i in range(200)])
    assert params.shape == (200, len(FEATURES))
    assert params.min() >= 0 and params.max() < 1
    differing = [(np.abs(params[i] - params[j]) > 0.2).sum() for i, j in itertools.combinations(range(200), 2)]
    assert min(differing) >= 5


def test_face_is_centred_on_the_template():
    """The mean face over many images is darkest (eyes, pupils, brows) on the template eye rows."""
    s = SynthFaces(seed=0)
    grey = np.stack([s.render(i, 0).mean(2) for i in range(60)]).mean(0)
    left = grey[46:58, 32:45].mean()  # around template left eye (38.3, 51.7)
    cheek = grey[60:72, 28:40].mean()  # the cheek below it
    assert left < cheek - 5


class TinyNet(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        chans = [3, 16, 32, 64, 64]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in itertools.pairwise(chans))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in chans[1:])
        self.emb = nn.Linear(64 * 4 * 4, 64)
        self.fc = nn.Linear(64, classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)))
        return self.emb(F.adaptive_avg_pool2d(x, 4).flatten(1))


def test_identities_are_learnable():
    """50 identities × 20 images: held-out probes find their identity's gallery template
    (mean embedding of 3 other held-out images) at rank-1 ≥ 0.9 by cosine (images at 56 px)."""
    torch.manual_seed(0)
    s, n_id = SynthFaces(seed=0), 50

    def load(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = np.repeat(np.arange(n_id), len(indices))  # identity-major order
        imgs = s.batch(ids, np.tile(indices, n_id))
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        return F.avg_pool2d(x, 2), torch.from_numpy(ids)  # 56 px keeps the test fast

    x, y = load(list(range(20)))
    gal_x, _ = load([100, 101, 102])
    probe_x, probe_y = load([103, 104, 105])
    net = TinyNet(n_id)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(500):
        idx = torch.randint(len(x), (64,), generator=gen)
        loss = F.cross_entropy(net.fc(net.embed(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        templates = F.normalize(F.normalize(net.embed(gal_x)).reshape(n_id, 3, -1).mean(1))
        probes = F.normalize(net.embed(probe_x))
    rank1 = ((probes @ templates.T).argmax(1) == probe_y).float().mean().item()
    assert rank1 >= 0.9, rank1
