"""VLR degradation and unrecognisable-image (UI) generation on batched tensors.

One code path for training and testing: images are float ``[B,3,H,W]`` in
[0, 1] on any device. The degradation models a distant face seen by a camera:
the face is sampled at ``size`` px (anti-aliased downsampling: a sensor
integrates light, it does not point-sample), optionally blurred, noised and
JPEG-compressed *at that low resolution*, then upsampled back to ``out_size``
with bicubic interpolation so the network input keeps its shape.

All randomness comes from a CPU ``torch.Generator`` (draws are made on the CPU
and moved), so results are identical on CPU and GPU runs for a given seed.
JPEG is done per image with OpenCV on the CPU (a round trip through the host),
so leave it off (``jpeg_prob=0``) when GPU throughput matters.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..train.config import VLRConfig

INTERPOLATIONS = ("bicubic", "area", "bilinear")
BLUR_SIGMA = (0.3, 1.0)  # random_vlr blur, in low-resolution pixels
JPEG_QUALITY = (30, 90)  # random_vlr JPEG quality range
UI_MIN_PX = 2


def _per_sample(value: float | torch.Tensor, n: int) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32).expand(n).clone() if not (
        isinstance(value, torch.Tensor) and value.ndim == 1) else value.float().cpu()


def _downsample(x: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    if interpolation == "area":
        return F.adaptive_avg_pool2d(x, size)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    return F.interpolate(x, size=(size, size), mode=interpolation, align_corners=False, antialias=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` [B] (0 = identity); replicate borders."""
    b, c, h, w = x.shape
    radius = max(int(math.ceil(3 * float(sigma.max()))), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x.device, x.dtype)  # [B, K]
    k = k.repeat_interleave(c, 0)  # one kernel per (sample, channel)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip per image via OpenCV on the CPU; ``quality`` [B], ≤ 0 skips."""
    out = x.clone()
    for i in torch.nonzero(quality > 0).flatten().tolist():
        arr = (x[i].permute(1, 2, 0).float().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", arr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
        out[i] = torch.from_numpy(dec).permute(2, 0, 1).to(x.device, x.dtype) / 255.0
    return out


def degrade(
    images: torch.Tensor,
    size: int | torch.Tensor,
    interpolation: str = "bicubic",
    blur_sigma: float | torch.Tensor = 0.0,
    noise_std: float | torch.Tensor = 0.0,
    jpeg_quality: int | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    out_size: int = 112,
) -> torch.Tensor:
    """Degrade ``images`` [B,3,H,W] in [0,1] to ``size`` px (int or per-sample [B]) and back.

    ``blur_sigma`` and ``noise_std`` are in low-resolution pixels and [0,1]
    units, scalars or per-sample [B]. Samples sharing a size are processed
    together, so per-sample sizes cost one resize per distinct size.
    """
    b = images.shape[0]
    sizes = _per_sample(size, b).round().long()
    sigma, noise = _per_sample(blur_sigma, b), _per_sample(noise_std, b)
    quality = None if jpeg_quality is None else _per_sample(jpeg_quality, b).round().long()
    # one noise draw of the largest size for the whole batch: independent of grouping
    n_max = int(sizes.max()) if b else 0
    eps = torch.randn(b, 3, n_max, n_max, generator=generator) if bool((noise > 0).any()) else None
    out = torch.empty(b, images.shape[1], out_size, out_size, dtype=images.dtype, device=images.device)
    for s in torch.unique(sizes).tolist():
        idx = torch.nonzero(sizes == s).flatten()
        dev_idx = idx.to(images.device)
        lr = _downsample(images.index_select(0, dev_idx), s, interpolation)
        if bool((sigma[idx] > 0).any()):
            lr = gaussian_blur(lr, sigma[idx])
        if eps is not None:
            lr = lr + eps[idx, :, :s, :s].to(lr.device, lr.dtype) * noise[idx].to(lr.device, lr.dtype)[:, None, None, None]
        lr = lr.clamp(0, 1)
        if quality is not None:
            lr = jpeg(lr, quality[idx])
        up = F.interpolate(lr, size=(out_size, out_size), mode="bicubic", align_corners=False)
        out[dev_idx] = up.clamp(0, 1)
    return out


def random_vlr(images: torch.Tensor, cfg: VLRConfig, generator: torch.Generator) -> torch.Tensor:
    """Degrade a random ``cfg.prob`` fraction of the batch to random VLR sizes.

    The same number of random draws is made whatever the outcome, so the result
    is a pure function of the generator state (exact resume).
    """
    b = images.shape[0]
    if b == 0 or cfg.prob <= 0:
        return images
    chosen = torch.rand(b, generator=generator) < cfg.prob
    sizes = torch.randint(cfg.min_size, cfg.max_size + 1, (b,), generator=generator)
    interp = torch.randint(len(cfg.interpolations), (b,), generator=generator)
    blur = torch.where(torch.rand(b, generator=generator) < cfg.blur_prob,
                       torch.empty(b).uniform_(*BLUR_SIGMA, generator=generator), torch.zeros(b))
    noise = torch.rand(b, generator=generator) * cfg.noise_std
    quality = torch.where(torch.rand(b, generator=generator) < cfg.jpeg_prob,
                          torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (b,), generator=generator), torch.zeros(b, dtype=torch.long))
    seed = int(torch.randint(2**62, (1,), generator=generator))
    out = images.clone()
    for k, name in enumerate(cfg.interpolations):
        idx = torch.nonzero(chosen & (interp == k)).flatten()
        if idx.numel() == 0:
            continue
        gen = torch.Generator().manual_seed(seed + k)
        dev_idx = idx.to(images.device)
        out[dev_idx] = degrade(images.index_select(0, dev_idx), sizes[idx], name, blur[idx], noise[idx],
                               quality[idx] if cfg.jpeg_prob > 0 else None, gen, images.shape[-1])
    return out


def _shuffled_patches(images: torch.Tensor, generator: torch.Generator, grid: int = 4) -> torch.Tensor:
    """Cut each image into ``grid``×``grid`` tiles and permute them: face texture, no face."""
    b, c, h, w = images.shape
    ph, pw = h // grid, w // grid
    x = images[:, :, : ph * grid, : pw * grid].reshape(b, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)
    x = x.reshape(b, grid * grid, c, ph, pw)
    perm = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(b)]).to(images.device)
    x = x[torch.arange(b, device=images.device)[:, None], perm]
    x = x.reshape(b, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, ph * grid, pw * grid)
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _texture(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random colour fields (coarse noise upsampled): background-like non-faces."""
    coarse = torch.rand(n, 3, 6, 6, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def make_ui(images: torch.Tensor, generator: torch.Generator, max_px: int = 6,
            nonface_fraction: float = 0.25) -> torch.Tensor:
    """Unrecognisable images, one per input: extreme degradation plus non-face crops.

    A ``1 − nonface_fraction`` share are faces shrunk to 2…``max_px`` px with
    heavy blur and noise; the rest are non-faces, half shuffled-tile crops of
    the inputs and half smooth random textures.
    """
    b, _, h, w = images.shape
    n_non = int(round(b * nonface_fraction))
    n_face = b - n_non
    sizes = torch.randint(UI_MIN_PX, max(max_px, UI_MIN_PX) + 1, (n_face,), generator=generator)
    sigma = torch.empty(n_face).uniform_(0.5, 1.5, generator=generator)
    noise = torch.empty(n_face).uniform_(0.05, 0.15, generator=generator)
    faces = degrade(images[:n_face], sizes, "area", sigma, noise, generator=generator, out_size=h)
    n_tiles = n_non // 2 + n_non % 2
    tiles = _shuffled_patches(images[n_face: n_face + n_tiles], generator)
    tex = _texture(n_non - n_tiles, h, generator).to(images.device, images.dtype)
    return torch.cat([faces, tiles, tex])
