"""Structural similarity (SSIM, Wang et al. 2004) as a differentiable torch function.

Gaussian-weighted local statistics (an ``window_size``-tap separable window of standard deviation
``sigma``), population (co)variances, ``C1 = (k1 L)^2`` and ``C2 = (k2 L)^2`` with ``L = data_range``.
The image value is the mean of the SSIM map over the positions where the whole window lies inside the
image (``(window_size - 1) / 2`` pixels are dropped on each side) and over the channels, exactly as
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
data_range=L, channel_axis=...)`` computes it. The full-size map (``ssim_map``) pads the image
symmetrically at the border (scipy's ``mode="reflect"``), so it equals skimage's ``full=True`` map too.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..imageops import gaussian_kernel1d

__all__ = ["ssim", "ssim_map"]


def _check(x: torch.Tensor, y: torch.Tensor, data_range: float, window_size: int, sigma: float,
           k1: float, k2: float, where: str) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor (B, C, H, W), got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{where}: {name} must be a batch of images (B, C, H, W), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{where}: {name} must be a floating-point tensor, got {t.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"{where}: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"{where}: window_size must be a positive odd int, got {window_size!r}")
    h, w = x.shape[-2:]
    if h < window_size or w < window_size:
        raise ValueError(f"{where}: images of {h}x{w} are smaller than the {window_size}x{window_size} window; "
                         f"use images of at least {window_size} pixels a side or a smaller window_size")
    if isinstance(data_range, torch.Tensor):
        raise TypeError(f"{where}: data_range must be a Python number (the images' value range, e.g. 1.0 "
                        f"or 255), got a tensor")
    if isinstance(data_range, bool) or not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"{where}: data_range must be a positive finite number (the images' value range, "
                         f"e.g. 1.0 or 255), got {data_range!r}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"{where}: sigma must be a positive finite number, got {sigma!r}")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"{where}: k1 and k2 must be >= 0, got k1={k1!r}, k2={k2!r}")


def _window(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return gaussian_kernel1d(window_size // 2, sigma).to(dtype=dtype, device=device)   # float64, then cast


def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims by ``r`` with the edge repeated (``d c b a | a b c d``): scipy's "reflect"
    (torch's "reflect" leaves the edge out). ``r`` < each side, which the window check guarantees."""
    def index(n: int) -> torch.Tensor:
        i = torch.arange(-r, n + r, device=x.device)
        i = torch.where(i < 0, -i - 1, i)
        return torch.where(i >= n, 2 * n - 1 - i, i)

    h, w = x.shape[-2:]
    return x.index_select(-2, index(h)).index_select(-1, index(w))


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid convolution of every channel of ``(N, C, H, W)`` with the 1-D window ``g``."""
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _map(x: torch.Tensor, y: torch.Tensor, data_range: float, window_size: int, sigma: float, k1: float,
         k2: float, pad: bool) -> torch.Tensor:
    # SSIM is invariant to scaling the images and L together: working on x / L keeps float32 accurate
    # (local variances of 0..255 values would lose digits in E[x^2] - E[x]^2).
    x, y = x / data_range, y / data_range
    if pad:
        r = window_size // 2
        x, y = _symmetric_pad(x, r), _symmetric_pad(y, r)
    g = _window(window_size, sigma, x.dtype, x.device)
    c = x.shape[1]
    stats = _filter(torch.cat([x, y, x * x, y * y, x * y], 1), g)
    ux, uy, uxx, uyy, uxy = stats.split(c, 1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = k1 ** 2, k2 ** 2   # (k L)^2 with L = 1 after the scaling above
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, reduction: Literal["mean", "none"] = "mean") -> torch.Tensor:
    """Mean SSIM of image batches ``x`` and ``y`` ``(B, C, H, W)``: per image ``(B,)`` with
    ``reduction="none"``, their mean (a scalar) with ``"mean"``. Differentiable in both inputs.

    Equals ``skimage.metrics.structural_similarity(x[i], y[i], gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range, channel_axis=0)`` for each image ``i`` (the map
    is averaged over the positions where the window fits, then over the channels).
    """
    _check(x, y, data_range, window_size, sigma, k1, k2, "ssim")
    if reduction not in ("mean", "none"):
        raise ValueError(f"ssim: reduction must be 'mean' or 'none', got {reduction!r}")
    per_image = _map(x, y, data_range, window_size, sigma, k1, k2, pad=False).flatten(1).mean(1)
    return per_image.mean() if reduction == "mean" else per_image


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, data_range: float, window_size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03, channel_mean: bool = False) -> torch.Tensor:
    """The full-size SSIM map of ``x`` and ``y`` ``(B, C, H, W)``: ``(B, C, H, W)``, or ``(B, H, W)`` averaged
    over the channels with ``channel_mean``. Border positions use symmetric padding, as skimage's
    ``full=True`` map does (``ssim`` ignores them). Differentiable.
    """
    _check(x, y, data_range, window_size, sigma, k1, k2, "ssim_map")
    s = _map(x, y, data_range, window_size, sigma, k1, k2, pad=True)
    return s.mean(1) if channel_mean else s
