"""Operations on images and anomaly maps that scorers, metrics and plugins share: Gaussian weights and
smoothing, and the reduction of a ``(B, H, W)`` anomaly map to one score per image."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["REDUCTIONS", "gaussian_blur", "gaussian_kernel1d", "reduce_map"]

REDUCTIONS = ("mean", "max", "topk")


def gaussian_kernel1d(radius: int, sigma: float, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """``exp(-t^2 / (2 sigma^2))`` at ``t = -radius..radius``, normalised to sum 1 (computed in ``dtype``)."""
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, H, W)`` maps (truncated at 4 sigma, reflect padding); ``sigma``
    <= 0 returns the maps unchanged."""
    if sigma <= 0:
        return maps
    radius = max(1, int(4 * sigma + 0.5))
    # tiny maps: reflect padding cannot reach past the map, so the kernel is cut there (and renormalised)
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    if radius == 0:
        return maps
    k = gaussian_kernel1d(radius, sigma, dtype=maps.dtype, device=maps.device)
    m = maps.unsqueeze(1)
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return m.squeeze(1)


def reduce_map(pixel: torch.Tensor, reduction: Literal["mean", "max", "topk"] = "mean",
               topk_fraction: float = 0.01) -> torch.Tensor:
    """One score per image from ``(B, H, W)`` maps: their mean, max, or the mean of the top ``topk_fraction``
    of the pixels (at least one)."""
    flat = pixel.flatten(1)
    if reduction == "mean":
        return flat.mean(1)
    if reduction == "max":
        return flat.amax(1)
    if reduction == "topk":
        k = max(1, int(round(topk_fraction * flat.shape[1])))
        return flat.topk(k, dim=1).values.mean(1)
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
