"""VLR degradation and UI generation on batched tensors."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlrface.data.degrade import INTERPOLATIONS, degrade, gaussian_blur, jpeg, make_ui, random_vlr
from vlrface.data.synth import SynthFaces
from vlrface.train.config import VLRConfig


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    imgs = SynthFaces(seed=0).batch(list(range(6)), [0] * 6)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255


def high_freq_energy(x: torch.Tensor) -> float:
    """Mean squared detail: the image minus its 5×5 box blur (what a tiny face cannot hold)."""
    return float(((x - F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)) ** 2).mean())


@pytest.mark.parametrize("interp", INTERPOLATIONS)
def test_shape_dtype_range(faces, interp):
    out = degrade(faces, 8, interp, blur_sigma=0.5, noise_std=0.05, generator=torch.Generator().manual_seed(0))
    assert out.shape == faces.shape and out.dtype == faces.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert degrade(faces[:2], 16, interp, out_size=64).shape == (2, 3, 64, 64)


def test_unknown_interpolation(faces):
    with pytest.raises(ValueError):
        degrade(faces, 8, "nearest-ish")


def test_deterministic_given_generator(faces):
    run = lambda s: degrade(faces, 12, noise_std=0.1, generator=torch.Generator().manual_seed(s))  # noqa: E731
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_batch_equals_single(faces):
    batch = degrade(faces, 10, "bicubic", blur_sigma=0.7)
    for i in range(faces.shape[0]):
        torch.testing.assert_close(batch[i: i + 1], degrade(faces[i: i + 1], 10, "bicubic", blur_sigma=0.7))


def test_per_sample_sizes_match_separate_calls(faces):
    sizes = torch.tensor([8, 16, 8, 32, 16, 8])
    out = degrade(faces, sizes, "area")
    for s in (8, 16, 32):
        idx = torch.nonzero(sizes == s).flatten()
        torch.testing.assert_close(out[idx], degrade(faces[idx], s, "area"))


def test_smaller_size_removes_high_frequencies(faces):
    e8, e32, hr = (high_freq_energy(degrade(faces, 8)), high_freq_energy(degrade(faces, 32)), high_freq_energy(faces))
    assert e8 < 0.05 * e32 and e32 < 0.25 * hr
    # degradation removes detail but keeps the mean colour of each image
    torch.testing.assert_close(degrade(faces, 8, "area").mean((2, 3)), faces.mean((2, 3)), atol=0.01, rtol=0)


def test_gaussian_blur_matches_opencv():
    img = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    sigma = 1.3
    ours = gaussian_blur(img, torch.tensor([sigma]))[0].permute(1, 2, 0).numpy()
    k = 2 * int(np.ceil(3 * sigma)) + 1
    ref = cv2.GaussianBlur(img[0].permute(1, 2, 0).numpy(), (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    torch.testing.assert_close(gaussian_blur(img, torch.tensor([0.0])), img, atol=1e-6, rtol=0)


def test_jpeg_round_trip(faces):
    out = jpeg(faces[:2], torch.tensor([10, 0]))
    assert out.shape == (2, 3, 112, 112)
    assert torch.equal(out[1], faces[1])  # quality 0 = untouched
    err = (out[0] - faces[0]).abs().mean()
    assert 0.002 < err < 0.1


def test_random_vlr_deterministic_and_fractional(faces):
    x = faces.repeat(8, 1, 1, 1)  # 48 images
    cfg = VLRConfig(prob=0.5, jpeg_prob=0.2)
    a = random_vlr(x, cfg, torch.Generator().manual_seed(7))
    b = random_vlr(x, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    changed = (a != x).flatten(1).any(1).float().mean()
    assert 0.25 < changed < 0.75
    assert torch.equal(random_vlr(x, VLRConfig(prob=0.0), torch.Generator()), x)
    assert (random_vlr(x, VLRConfig(prob=1.0), torch.Generator()) != x).flatten(1).any(1).all()


def test_make_ui(faces):
    x = faces.repeat(2, 1, 1, 1)  # 12
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ui = make_ui(x, gen(), max_px=6, nonface_fraction=0.25)
    assert ui.shape == x.shape and ui.min() >= 0 and ui.max() <= 1
    assert torch.equal(ui, make_ui(x, gen(), max_px=6, nonface_fraction=0.25))
    n_face = 12 - 3
    assert high_freq_energy(ui[:n_face]) < 0.5 * high_freq_energy(degrade(x[:n_face], 8))  # ≤ 6 px
    assert high_freq_energy(ui[:n_face]) > 0  # noise and blur, not a flat image
    assert not torch.allclose(ui[n_face], x[n_face], atol=0.05)  # shuffled tiles are not the face
