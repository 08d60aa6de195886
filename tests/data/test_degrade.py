"""VLR degradation and UI generation on batched tensors."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlrface.config import VLRConfig
from vlrface.data.degrade import (
    INTERPOLATIONS,
    blur_matrices,
    degrade,
    gaussian_blur,
    jpeg,
    make_ui,
    random_vlr,
    resize_matrix,
)
from vlrface.data.synth import SynthFaces


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
        torch.testing.assert_close(batch[i : i + 1], degrade(faces[i : i + 1], 10, "bicubic", blur_sigma=0.7))


def test_per_sample_sizes_match_separate_calls(faces):
    sizes = torch.tensor([8, 16, 8, 32, 16, 8])
    out = degrade(faces, sizes, "area")
    for s in (8, 16, 32):
        idx = torch.nonzero(sizes == s).flatten()
        torch.testing.assert_close(out[idx], degrade(faces[idx], s, "area"))


def reference_down(x: torch.Tensor, s: int, interp: str) -> torch.Tensor:
    if interp == "area":
        return F.adaptive_avg_pool2d(x, s)
    return F.interpolate(x, size=(s, s), mode=interp, align_corners=False, antialias=True)


def reference(
    x: torch.Tensor,
    size: int,
    interp: str,
    sigma: float = 0.0,
    noise: float = 0.0,
    eps: torch.Tensor | None = None,
    out_size: int = 112,
) -> torch.Tensor:
    """One sample at a time, with the 2-D ops the per-group implementation ran (independent of the matrices)."""
    lr = reference_down(x, size, interp)
    if sigma > 0:  # separable Gaussian, OpenCV's kernel, replicate borders
        r = max(int(np.ceil(3 * sigma)), 1)
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
        k = (k / k.sum()).repeat(x.shape[1], 1)
        lr = F.conv2d(F.pad(lr, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=x.shape[1])
        lr = F.conv2d(F.pad(lr, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=x.shape[1])
    if eps is not None:
        lr = lr + noise * eps[:, :, :size, :size]
    lr = lr.clamp(0, 1)
    return F.interpolate(lr, size=(out_size, out_size), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("interp", INTERPOLATIONS)
def test_resize_matrix_equals_the_2d_op(interp):
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    for s in (3, 8, 17, 32):
        m = resize_matrix(112, s, interp)
        assert m.shape == (s, 112)
        torch.testing.assert_close(m @ x @ m.T, reference_down(x, s, interp), atol=1e-5, rtol=0)
        torch.testing.assert_close(m.sum(1), torch.ones(s), atol=1e-6, rtol=0)  # weights keep brightness


@pytest.mark.parametrize("interp", INTERPOLATIONS)
def test_batched_equals_per_sample_reference(faces, interp):
    x = faces.repeat(2, 1, 1, 1)  # 12 images
    sizes = torch.tensor([8, 16, 5, 32, 11, 8, 2, 24, 16, 31, 9, 13])
    sigma = torch.tensor([0, 0.3, 1.0, 0, 0.7, 0.45, 0, 0.9, 0, 0.31, 0.66, 0])
    noise = torch.linspace(0, 0.1, 12)
    out = degrade(x, sizes, interp, sigma, noise, generator=torch.Generator().manual_seed(5), out_size=96)
    eps = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(5))  # the draw documented by degrade
    for i in range(12):
        ref = reference(x[i : i + 1], int(sizes[i]), interp, float(sigma[i]), float(noise[i]), eps[i : i + 1], 96)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=0)


def test_mixed_interpolations_in_one_call(faces):
    x = faces.repeat(2, 1, 1, 1)
    modes = [INTERPOLATIONS[i % 3] for i in range(12)]
    sizes = torch.arange(12) + 6
    out = degrade(x.double(), sizes, modes, blur_sigma=0.5)
    assert out.dtype == torch.float64
    for i in range(12):
        torch.testing.assert_close(
            out[i : i + 1], reference(x[i : i + 1].double(), int(sizes[i]), modes[i], 0.5), atol=1e-6, rtol=0
        )
    with pytest.raises(ValueError, match="3 interpolations"):
        degrade(x[:2], 8, modes[:3])
    with pytest.raises(ValueError, match="≥ 1 px"):
        degrade(x[:2], torch.tensor([0, 4]))


def test_blur_matrix_by_hand():
    # σ = 0.5, radius 2: weights ∝ exp(-k²/0.5) for k = -2..2; replicate borders fold the tails onto the edge
    w = torch.exp(-(torch.arange(-2, 3.0) ** 2) / 0.5)
    w = w / w.sum()
    m = blur_matrices(torch.tensor([0.5, 0.0]), torch.tensor([4, 3]), 5)
    assert m.shape == (2, 5, 5)
    torch.testing.assert_close(m[0, 0, :4], torch.stack([w[0] + w[1] + w[2], w[3], w[4], torch.tensor(0.0)]))
    torch.testing.assert_close(m[0, 1, :4], torch.stack([w[0] + w[1], w[2], w[3], w[4]]))
    assert torch.all(m[0, 4] == 0) and torch.all(m[0, :, 4] == 0)  # beyond the 4-px image: padding
    torch.testing.assert_close(m[1], torch.diag(torch.tensor([1.0, 1, 1, 0, 0])))  # σ = 0: identity


def test_random_vlr_equals_reference_when_all_degraded(faces):
    cfg = VLRConfig(prob=1.0, min_size=12, max_size=12, interpolations=["bilinear"], blur_prob=0.0, noise_std=0.0)
    out = random_vlr(faces, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, reference(faces, 12, "bilinear"), atol=1e-5, rtol=0)


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


def test_jitter_framing_is_seeded_and_zero_is_identity(faces):
    from vlrface.data.degrade import jitter_framing

    same = jitter_framing(faces, 0.0, 0.0, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, faces, atol=1e-4, rtol=0)
    a = jitter_framing(faces, 0.15, 0.08, 8.0, torch.Generator().manual_seed(1))
    b = jitter_framing(faces, 0.15, 0.08, 8.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == faces.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert float((a - faces).abs().mean()) > 0.01  # it moved the faces
    assert jitter_framing(faces[:0], 0.15, 0.08, 8.0, torch.Generator()).shape[0] == 0


def test_jitter_framing_geometry():
    """A bright dot moves where a shift / zoom puts it (output → input mapping, centre fixed)."""
    from vlrface.data.degrade import jitter_framing

    x = torch.zeros(1, 1, 64, 64)
    x[..., 40:44, 40:44] = 1.0  # off-centre dot at ~(42, 42)

    def centroid(img):
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        w = img[0, 0]
        return float((w * ys).sum() / w.sum()), float((w * xs).sum() / w.sum())

    g = torch.Generator().manual_seed(0)
    u = torch.rand(1, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = jitter_framing(x, 0.2, 0.0, 0.0, g)  # zoom only: the dot moves away from / towards the centre
    zoom = 1 + 0.2 * float(u[0, 0])
    cy, cx = centroid(out)
    assert abs((cx - 31.5) - zoom * (41.5 - 31.5)) < 0.6 and abs((cy - 31.5) - zoom * (41.5 - 31.5)) < 0.6


def test_random_jitter_off_makes_no_draws(faces):
    from vlrface.config import JitterConfig
    from vlrface.data.degrade import random_jitter

    g = torch.Generator().manual_seed(5)
    assert random_jitter(faces, JitterConfig(), g) is faces
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    assert JitterConfig(rotate=5.0).enabled and not JitterConfig().enabled
