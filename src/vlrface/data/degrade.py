"""VLR degradation and unrecognisable-image (UI) generation on batched tensors.

One code path for training and testing: images are float ``[B,3,H,W]`` in
[0, 1] on any device. The degradation models a distant face seen by a camera:
the face is sampled at ``size`` px (anti-aliased downsampling: a sensor
integrates light, it does not point-sample), optionally blurred, noised and
JPEG-compressed *at that low resolution*, then upsampled back to ``out_size``
with bicubic interpolation so the network input keeps its shape.

Why matrices: every resize here (``F.interpolate`` with antialias, adaptive
average pooling, the bicubic upsampling) and the replicate-border Gaussian
blur is separable and linear, so per sample it is ``M_i X M_iᵀ`` per channel.
The 1-D weight matrices are read off by applying the very same ``F.interpolate``
/ ``adaptive_avg_pool2d`` call to an identity matrix (cached per size, mode,
device and dtype), zero-padded to the batch's largest size, and the whole
batch — any mix of sizes, interpolations and blur strengths — is degraded with
four batched matmuls. The earlier code ran one resize per (interpolation,
size) group, up to ~75 small groups per batch, which cost 24–46 % of an H100
training step (benchmarks/BENCHMARKS.md).

All randomness comes from a CPU ``torch.Generator`` (draws are made on the CPU
and moved), so results are identical on CPU and GPU runs for a given seed.
JPEG is done per image with OpenCV on the CPU (a round trip through the host),
so leave it off (``jpeg_prob=0``) when GPU throughput matters.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import JitterConfig, VLRConfig

INTERPOLATIONS = ("bicubic", "area", "bilinear")
BLUR_SIGMA = (0.3, 1.0)  # random_vlr blur, in low-resolution pixels
JPEG_QUALITY = (30, 90)  # random_vlr JPEG quality range
UI_MIN_PX = 2
_UP = "bicubic-up"  # the upsampling back to out_size: plain bicubic, no antialias


def _per_sample(value: float | torch.Tensor, n: int) -> torch.Tensor:
    return (
        torch.as_tensor(value, dtype=torch.float32).expand(n).clone()
        if not (isinstance(value, torch.Tensor) and value.ndim == 1)
        else value.float().cpu()
    )


def _mode_index(interpolation: str | Sequence[str], n: int) -> torch.Tensor:
    """Per-sample index into :data:`INTERPOLATIONS` (CPU long ``[n]``)."""
    names = [interpolation] * n if isinstance(interpolation, str) else list(interpolation)
    if len(names) != n:
        raise ValueError(f"{len(names)} interpolations for a batch of {n}")
    bad = sorted(set(names) - set(INTERPOLATIONS))
    if bad:
        raise ValueError(f"unknown interpolation {bad[0]!r}; choose one of {', '.join(INTERPOLATIONS)}")
    return torch.tensor([INTERPOLATIONS.index(m) for m in names], dtype=torch.long)


def resize_matrix(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """``[n_out, n_in]`` float32 weights of the 1-D resize that the 2-D op applies along each axis.

    Read off the op itself (one axis kept at length 1, which every mode leaves
    unchanged), so ``M X Mᵀ`` equals the op on ``X`` to float rounding.
    """
    eye = torch.eye(n_in).reshape(n_in, 1, 1, n_in)
    if mode == "area":
        y = F.adaptive_avg_pool2d(eye, (1, n_out))
    elif mode == _UP:
        y = F.interpolate(eye, size=(1, n_out), mode="bicubic", align_corners=False)
    else:
        y = F.interpolate(eye, size=(1, n_out), mode=mode, align_corners=False, antialias=True)
    return y.reshape(n_in, n_out).T.contiguous()


def _cap(n: int) -> int:
    """Table width: the next power of two ≥ n (≥ 8), so a few tables serve every batch."""
    return max(8, 1 << (n - 1).bit_length())


@functools.lru_cache(maxsize=16)
def _down_table(n_in: int, cap: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[modes, cap+1, cap, n_in]``: entry ``[m, s]`` is the n_in → s matrix, zero rows below s."""
    table = torch.zeros(len(INTERPOLATIONS), cap + 1, cap, n_in)
    for m, mode in enumerate(INTERPOLATIONS):
        for s in range(1, cap + 1):
            table[m, s, :s] = resize_matrix(n_in, s, mode)
    return table.to(device, dtype)


@functools.lru_cache(maxsize=16)
def _up_table(n_out: int, cap: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[cap+1, n_out, cap]``: entry ``[s]`` is the bicubic s → n_out matrix, zero columns beyond s."""
    table = torch.zeros(cap + 1, n_out, cap)
    for s in range(1, cap + 1):
        table[s, :, :s] = resize_matrix(s, n_out, _UP)
    return table.to(device, dtype)


def blur_matrices(
    sigma: torch.Tensor,
    sizes: torch.Tensor,
    n: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``[B, n, n]`` Gaussian blur along one axis of a ``sizes[i]``-px image, as a matrix.

    Kernel truncated at ``max(ceil(3σ), 1)`` px and normalised (OpenCV's
    ``GaussianBlur`` kernel), replicate borders; ``σ = 0`` is the identity.
    Rows and columns beyond ``sizes[i]`` are zero (padding of a smaller image).
    """
    radius = torch.ceil(3 * sigma.float()).clamp_min(1).long()
    r = int(radius.max())
    t = torch.arange(-r, r + 1)
    k = torch.exp(-0.5 * (t[None] / sigma.float().clamp_min(1e-3)[:, None]) ** 2) * (t.abs()[None] <= radius[:, None])
    k = (k / k.sum(1, keepdim=True)).to(device, dtype)  # [B, K]
    sizes = sizes.to(device)
    p = torch.arange(n, device=device)
    cols = torch.minimum((p[:, None] + t.to(device)[None]).clamp_min(0), (sizes - 1)[:, None, None])  # [B, n, K]
    rows_in = (p[None] < sizes[:, None]).to(dtype)[..., None]  # [B, n, 1]
    return torch.zeros(len(sizes), n, n, device=device, dtype=dtype).scatter_add_(2, cols, k[:, None] * rows_in)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` [B] (0 = identity); replicate borders."""
    b, _, h, w = x.shape
    bh = blur_matrices(sigma, torch.full((b,), h), h, x.device, x.dtype)
    bw = bh if w == h else blur_matrices(sigma, torch.full((b,), w), w, x.device, x.dtype)
    return _sandwich(bh, x, bw)


def _sandwich(left: torch.Tensor, x: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per sample and channel ``left[i] @ x[i, c] @ right[i]ᵀ``: two batched matmuls, no copy of ``x``."""
    b, c, h, w = x.shape
    t = torch.bmm(x.reshape(b, c * h, w), right.transpose(1, 2)).reshape(b, c, h, -1)  # contract W
    return torch.matmul(left[:, None], t)  # contract H


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip per image via OpenCV on the CPU; ``quality`` [B], ≤ 0 skips."""
    out = x.clone()
    for i in torch.nonzero(quality > 0).flatten().tolist():
        arr = (x[i].permute(1, 2, 0).float().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", arr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if dec is None:
            raise RuntimeError(f"OpenCV's JPEG round trip failed (quality {int(quality[i])})")
        out[i] = torch.from_numpy(dec[..., ::-1].copy()).permute(2, 0, 1).to(x.device, x.dtype) / 255.0
    return out


def degrade(
    images: torch.Tensor,
    size: int | torch.Tensor,
    interpolation: str | Sequence[str] = "bicubic",
    blur_sigma: float | torch.Tensor = 0.0,
    noise_std: float | torch.Tensor = 0.0,
    jpeg_quality: int | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    out_size: int = 112,
) -> torch.Tensor:
    """Degrade ``images`` [B,3,H,W] in [0,1] to ``size`` px (int or per-sample [B]) and back.

    ``interpolation`` is one name or one per sample; ``blur_sigma`` and
    ``noise_std`` are in low-resolution pixels and [0,1] units, scalars or
    per-sample [B]. The whole batch is done at once (see module docstring).
    The noise is one ``[B, C, s_max, s_max]`` normal draw from ``generator``,
    sample ``i`` using its top-left ``s_i × s_i``.
    """
    b, c, h, w = images.shape
    sizes = _per_sample(size, b).round().long()
    modes = _mode_index(interpolation, b)
    sigma, noise = _per_sample(blur_sigma, b), _per_sample(noise_std, b)
    quality = None if jpeg_quality is None else _per_sample(jpeg_quality, b).round().long()
    if b == 0:
        return images.new_empty(0, c, out_size, out_size)
    if int(sizes.min()) < 1:
        raise ValueError(f"degradation sizes must be ≥ 1 px, got {int(sizes.min())}")
    n = int(sizes.max())
    eps = torch.randn(b, c, n, n, generator=generator) if bool((noise > 0).any()) else None
    dev, dt = images.device, images.dtype
    cap = _cap(n)
    s_dev, m_dev = sizes.to(dev, non_blocking=True), modes.to(dev, non_blocking=True)
    down_h = _down_table(h, cap, dev, dt)[m_dev, s_dev, :n]  # [B, n, H]
    down_w = down_h if w == h else _down_table(w, cap, dev, dt)[m_dev, s_dev, :n]
    if bool((sigma > 0).any()):
        blur = blur_matrices(sigma, sizes, n, dev, dt)
        down_h, down_w = blur @ down_h, blur @ down_w
    lr = _sandwich(down_h, images, down_w)  # [B, C, n, n], sample i valid in its top-left s_i × s_i
    if eps is not None:
        lr = lr + eps.to(dev, dt) * noise.to(dev, dt)[:, None, None, None]
    lr = lr.clamp(0, 1)
    if quality is not None:
        for i in torch.nonzero(quality > 0).flatten().tolist():
            s = int(sizes[i])
            lr[i, :, :s, :s] = jpeg(lr[i : i + 1, :, :s, :s], quality[i : i + 1])[0]
    up = _up_table(out_size, cap, dev, dt)[s_dev, :, :n]  # [B, out, n]
    return _sandwich(up, lr, up).clamp(0, 1)


def random_vlr(images: torch.Tensor, cfg: VLRConfig, generator: torch.Generator) -> torch.Tensor:
    """Degrade a random ``cfg.prob`` fraction of the batch to random VLR sizes.

    The same number of random draws is made whatever the outcome, so the result
    is a pure function of the generator state (exact resume). All decisions are
    CPU tensors, so the device never synchronises with the host here.
    """
    return random_vlr_rows(images, cfg, generator)[0]


def random_vlr_rows(
    images: torch.Tensor, cfg: VLRConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_vlr`, and which rows it degraded (bool ``[B]``, CPU): the trainer logs L_ID per HR/VLR."""
    b = images.shape[0]
    if b == 0 or cfg.prob <= 0:
        return images, torch.zeros(b, dtype=torch.bool)
    chosen = torch.rand(b, generator=generator) < cfg.prob
    sizes = torch.randint(cfg.min_size, cfg.max_size + 1, (b,), generator=generator)
    interp = torch.randint(len(cfg.interpolations), (b,), generator=generator)
    blur = torch.where(
        torch.rand(b, generator=generator) < cfg.blur_prob,
        torch.empty(b).uniform_(*BLUR_SIGMA, generator=generator),
        torch.zeros(b),
    )
    noise = torch.rand(b, generator=generator) * cfg.noise_std
    quality = torch.where(
        torch.rand(b, generator=generator) < cfg.jpeg_prob,
        torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (b,), generator=generator),
        torch.zeros(b, dtype=torch.long),
    )
    seed = int(torch.randint(2**62, (1,), generator=generator))
    idx = torch.nonzero(chosen).flatten()
    if idx.numel() == 0:
        return images, chosen
    names = [cfg.interpolations[k] for k in interp[idx].tolist()]
    dev_idx = idx.to(images.device, non_blocking=True)
    low = degrade(
        images.index_select(0, dev_idx),
        sizes[idx],
        names,
        blur[idx],
        noise[idx],
        quality[idx] if cfg.jpeg_prob > 0 else None,
        torch.Generator().manual_seed(seed),
        images.shape[-1],
    )
    return images.index_copy(0, dev_idx, low), chosen


def jitter_framing(
    images: torch.Tensor,
    scale: float,
    shift: float,
    rotate_deg: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Re-frame each image of ``images`` [B,C,H,W] at random: zoom, shift and rotate.

    Per sample, a zoom factor uniform in ``[1 − scale, 1 + scale]`` (> 1 = the
    face fills more of the crop), a shift uniform in ``±shift`` of the side
    along each axis and a rotation uniform in ``±rotate_deg`` degrees about the
    centre, applied as one affine resampling (bilinear, reflected borders, so a
    zoomed-out face shows mirrored surroundings rather than black). Four
    uniform draws per sample are made from the CPU ``generator`` whatever the
    settings, so the result is a pure function of its state; all zeros is the
    identity (to float rounding).
    """
    b = images.shape[0]
    u = torch.rand(b, 4, generator=generator) * 2 - 1  # [-1, 1): zoom, dx, dy, angle
    if b == 0:
        return images
    zoom = 1 + scale * u[:, 0]
    angle = torch.deg2rad(rotate_deg * u[:, 3])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # output → input sampling coordinates in [-1, 1] units: rotate and scale about the centre, then shift
    theta = torch.stack(
        [torch.stack([cos, -sin, 2 * shift * u[:, 1]], 1), torch.stack([sin, cos, 2 * shift * u[:, 2]], 1)], 1
    ).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False).clamp(0, 1)


def random_jitter(images: torch.Tensor, cfg: JitterConfig, generator: torch.Generator) -> torch.Tensor:
    """:func:`jitter_framing` with the config's ranges; off (no draws, images as given) when all are 0."""
    if not cfg.enabled:
        return images
    return jitter_framing(images, cfg.scale, cfg.shift, cfg.rotate, generator)


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


def make_ui(
    images: torch.Tensor, generator: torch.Generator, max_px: int = 6, nonface_fraction: float = 0.25
) -> torch.Tensor:
    """Unrecognisable images, one per input: extreme degradation plus non-face crops.

    A ``1 − nonface_fraction`` share are faces shrunk to 2…``max_px`` px with
    heavy blur and noise; the rest are non-faces, half shuffled-tile crops of
    the inputs and half smooth random textures.
    """
    b, _, h, _ = images.shape
    n_non = round(b * nonface_fraction)
    n_face = b - n_non
    sizes = torch.randint(UI_MIN_PX, max(max_px, UI_MIN_PX) + 1, (n_face,), generator=generator)
    sigma = torch.empty(n_face).uniform_(0.5, 1.5, generator=generator)
    noise = torch.empty(n_face).uniform_(0.05, 0.15, generator=generator)
    faces = degrade(images[:n_face], sizes, "area", sigma, noise, generator=generator, out_size=h)
    n_tiles = n_non // 2 + n_non % 2
    tiles = _shuffled_patches(images[n_face : n_face + n_tiles], generator)
    tex = _texture(n_non - n_tiles, h, generator).to(images.device, images.dtype)
    return torch.cat([faces, tiles, tex])
