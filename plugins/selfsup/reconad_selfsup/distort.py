"""The distortion generator of §3.2 / Fig. 5: (X_hat, M) pairs from clean images, batched with grid_sample.

Per image: sample a patch size and location, deform the patch elastically (a random displacement field,
Gaussian-smoothed and scaled by ``alpha``), cut it with a random shape (an ellipse with a noisy rim, or
the whole rectangle), optionally shift its brightness, and paste it back. ``M`` is the shape, embedded in
the image; ``X_hat`` equals ``X`` outside it, so ``M`` covers every changed pixel.

Random numbers are drawn from ``generator`` on its own device (a CPU generator by default) in ``x``'s
dtype, and are small: a few scalars and a ``grid`` x ``grid`` noise field per image, independent of the
image size. The image-sized work (field interpolation, sampling, compositing) runs on ``x``'s device, so
a given seed gives the same distortions on the CPU and on a GPU (up to floating-point rounding).

Two simplifications against the paper's figure, both vectorised equivalents: the displacement field is
defined in patch-local coordinates (so it scales with the patch), and the deformed patch samples the
image around it (reflection at the image border) instead of a cut-out copy; this avoids a seam at the
patch border.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from reconad.imageops import gaussian_kernel1d

__all__ = ["distort", "smooth_noise"]

Shape = Literal["blob", "ellipse", "rect"]


def smooth_noise(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smooth ``(B, K, n, n)`` noise (``sigma`` in cells, circular padding so every cell is alike)
    and scale each map to a maximum absolute value of 1."""
    if sigma > 0:
        n = noise.shape[-1]
        radius = max(1, min(int(3 * sigma + 0.5), n // 2))
        k = gaussian_kernel1d(radius, sigma, dtype=noise.dtype, device=noise.device).view(1, 1, 1, -1)
        b, c = noise.shape[:2]
        m = noise.reshape(b * c, 1, n, n)
        m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="circular"), k)
        m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="circular"), k.transpose(-1, -2))
        noise = m.view(b, c, n, n)
    peak = noise.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(noise.dtype).tiny)
    return noise / peak


def _check(x: torch.Tensor, patch_min: float, patch_max: float, alpha: float, sigma: float, grid: int,
           shape: str, shape_noise: float, brightness: float, brightness_prob: float, max_tries: int) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"distort: x must be a float (B, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")
    if not 0.0 < patch_min <= patch_max <= 1.0:
        raise ValueError(f"distort: need 0 < patch_min <= patch_max <= 1 (fractions of the image side), "
                         f"got patch_min={patch_min}, patch_max={patch_max}")
    if alpha < 0 or sigma < 0 or shape_noise < 0 or brightness < 0:
        raise ValueError(f"distort: alpha, sigma, shape_noise and brightness must be >= 0, got alpha={alpha}, "
                         f"sigma={sigma}, shape_noise={shape_noise}, brightness={brightness}")
    if not 0.0 <= brightness_prob <= 1.0:
        raise ValueError(f"distort: brightness_prob must be in [0, 1], got {brightness_prob}")
    if grid < 2:
        raise ValueError(f"distort: grid must be >= 2 noise cells, got {grid}")
    if shape not in ("blob", "ellipse", "rect"):
        raise ValueError(f"distort: shape must be 'blob', 'ellipse' or 'rect', got {shape!r}")
    if max_tries < 0:
        raise ValueError(f"distort: max_tries must be >= 0, got {max_tries}")


def _draw(x: torch.Tensor, g: torch.Generator, patch_min: float, patch_max: float, alpha: float, sigma: float,
          grid: int, shape: str, shape_noise: float, brightness: float, brightness_prob: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    draw = dict(generator=g, device=g.device, dtype=dt)
    u = torch.rand(b, 9, **draw).to(dev)
    noise = torch.randn(b, 3, grid, grid, **draw).to(dev)

    # patch: side fractions in [patch_min, patch_max], at least 2 pixels, anywhere inside the image
    ph = (patch_min + (patch_max - patch_min) * u[:, 0]) * h
    pw = (patch_min + (patch_max - patch_min) * u[:, 1]) * w
    ph = ph.round().clamp(2, h) if h >= 2 else ph.new_ones(b)
    pw = pw.round().clamp(2, w) if w >= 2 else pw.new_ones(b)
    y0 = torch.floor(u[:, 2] * (h - ph + 1)).clamp(max=h - ph)
    x0 = torch.floor(u[:, 3] * (w - pw + 1)).clamp(max=w - pw)

    # every pixel centre in patch-local coordinates: [-1, 1] across the patch
    cy = torch.arange(h, device=dev, dtype=dt) + 0.5
    cx = torch.arange(w, device=dev, dtype=dt) + 0.5
    ly = (2 * (cy.view(1, h, 1) - y0.view(b, 1, 1)) / ph.view(b, 1, 1) - 1).expand(b, h, w)
    lx = (2 * (cx.view(1, 1, w) - x0.view(b, 1, 1)) / pw.view(b, 1, 1) - 1).expand(b, h, w)
    fields = F.grid_sample(smooth_noise(noise, sigma * grid), torch.stack((lx, ly), -1), mode="bilinear",
                           padding_mode="border", align_corners=True)          # (B, 3, H, W)

    # elastic deformation: displacement up to alpha x the patch side, sampled around each pixel
    sy = cy.view(1, h, 1) + alpha * ph.view(b, 1, 1) * fields[:, 0]
    sx = cx.view(1, 1, w) + alpha * pw.view(b, 1, 1) * fields[:, 1]
    src = torch.stack((2 * sx / w - 1, 2 * sy / h - 1), -1)
    deformed = F.grid_sample(x, src, mode="bilinear", padding_mode="reflection", align_corners=False)

    if brightness > 0:
        on = (u[:, 4] < brightness_prob).to(dt)
        shift = brightness * (2 * u[:, 5] - 1) * on
        deformed = (deformed + shift.view(b, 1, 1, 1)).clamp(0, 1)

    inside = (lx.abs() <= 1) & (ly.abs() <= 1)
    if shape == "rect":
        region = inside
    else:
        # a rotated ellipse with semi-axes in [0.5, 1] of the patch, its rim moved by smooth noise
        angle = torch.pi * u[:, 6].view(b, 1, 1)
        ax = (0.5 + 0.5 * u[:, 7]).view(b, 1, 1)
        ay = (0.5 + 0.5 * u[:, 8]).view(b, 1, 1)
        ru = lx * torch.cos(angle) + ly * torch.sin(angle)
        rv = -lx * torch.sin(angle) + ly * torch.cos(angle)
        r = torch.sqrt((ru / ax) ** 2 + (rv / ay) ** 2)
        if shape == "blob":
            r = r + min(shape_noise, 0.9) * fields[:, 2]
        region = inside & (r < 1)
        # the pixel nearest the patch centre is always in, so no shape is empty
        centre = (ly.abs() <= 1.0 / ph.view(b, 1, 1)) & (lx.abs() <= 1.0 / pw.view(b, 1, 1))
        region = region | centre
    mask = region.unsqueeze(1)
    x_hat = torch.where(mask, deformed, x)
    return x_hat, mask.to(dt)


def distort(x: torch.Tensor, generator: torch.Generator | None = None, *, patch_min: float = 0.1,
            patch_max: float = 0.4, alpha: float = 0.2, sigma: float = 0.12, grid: int = 16,
            shape: Shape = "blob", shape_noise: float = 0.35, brightness: float = 0.0,
            brightness_prob: float = 0.5, max_tries: int = 4, min_change: float = 1.0 / 255.0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distorted copies of a batch and where they were distorted.

    Args:
        x: ``(B, C, H, W)`` images in [0, 1] on any device, any float dtype.
        generator: the source of randomness (its device is where draws happen); None = a fresh CPU
            generator seeded from torch's global RNG.
        patch_min, patch_max: patch height and width, as fractions of the image's, drawn uniformly.
        alpha: largest displacement of the elastic deformation, as a fraction of the patch side.
        sigma: smoothing of the displacement field, as a fraction of the patch side.
        grid: resolution of the random fields across a patch.
        shape: ``blob`` (an ellipse with a noisy rim), ``ellipse``, or ``rect`` (the whole patch).
        shape_noise: how far the blob's rim moves (in units of its radius, below 0.9).
        brightness: largest brightness shift of a distorted patch (0 = none); applied with
            probability ``brightness_prob`` per image.
        max_tries: redraws for an image whose distortion changed no pixel (a flat region, say).
        min_change: after ``max_tries``, the masked pixels of such an image move by this much (towards the
            middle of [0, 1]), so ``||X_hat - X||_1 > 0`` holds for every image.

    Returns:
        ``(x_hat, mask)``: ``x_hat`` like ``x``, in [0, 1] where ``x`` is; ``mask`` ``(B, 1, H, W)`` of 0 / 1 in
        ``x``'s dtype, 1 where the distortion was pasted; ``x_hat == x`` exactly where ``mask`` is 0.
    """
    _check(x, patch_min, patch_max, alpha, sigma, grid, shape, shape_noise, brightness, brightness_prob, max_tries)
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()))
    opts = dict(patch_min=patch_min, patch_max=patch_max, alpha=alpha, sigma=sigma, grid=grid, shape=shape,
                shape_noise=shape_noise, brightness=brightness, brightness_prob=brightness_prob)
    x_hat, mask = _draw(x, generator, **opts)
    for _ in range(max_tries):
        bad = (x_hat == x).flatten(1).all(1)
        if not bool(bad.any()):
            return x_hat, mask
        idx = torch.nonzero(bad).flatten()
        x_hat[idx], mask[idx] = _draw(x[idx], generator, **opts)
    bad = (x_hat == x).flatten(1).all(1)
    if bool(bad.any()):
        step = torch.where(x < 0.5, min_change, -min_change).to(x.dtype)
        nudge = bad.view(-1, 1, 1, 1) & (mask > 0)
        x_hat = torch.where(nudge, x + step, x_hat)
    return x_hat, mask
