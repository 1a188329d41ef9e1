"""Built-in scorers: per-pixel reconstruction error maps reduced to image scores."""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..components import Scorer, Scores

__all__ = ["ReconstructionErrorScorer", "gaussian_blur"]


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, H, W)`` maps (truncated at 4 sigma, reflect padding)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(4 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    m = maps.unsqueeze(1)
    pad = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    if pad < radius:  # tiny maps: reflect padding cannot exceed the map
        k = k[radius - pad: radius + pad + 1]
        k = k / k.sum()
        radius = pad
    m = F.pad(m, (radius, radius, 0, 0), mode="reflect") if radius else m
    m = F.conv2d(m, k.view(1, 1, 1, -1))
    m = F.pad(m, (0, 0, radius, radius), mode="reflect") if radius else m
    m = F.conv2d(m, k.view(1, 1, -1, 1))
    return m.squeeze(1)


class ReconstructionErrorScorer(Scorer):
    """Pixel map = per-pixel reconstruction error (squared or absolute) averaged over channels, optionally
    Gaussian-smoothed; image score = its mean, max, or the mean of its top ``topk_fraction`` pixels, plus
    ``entropy_weight`` times the memory's per-image addressing entropy (ODDObjects' Algorithm 2)."""

    def __init__(self, error: Literal["squared", "absolute"] = "squared",
                 reduction: Literal["mean", "max", "topk"] = "mean", topk_fraction: float = 0.01,
                 smoothing_sigma: float = 0.0, entropy_weight: float = 0.0) -> None:
        super().__init__()
        if not 0.0 < topk_fraction <= 1.0:
            raise ValueError(f"scorer topk_fraction must be in (0, 1], got {topk_fraction}")
        self.error, self.reduction = error, reduction
        self.topk_fraction, self.sigma, self.entropy_weight = topk_fraction, smoothing_sigma, entropy_weight

    def forward(self, outputs: dict[str, Any]) -> Scores:
        diff = outputs["recon"].float() - outputs["input"].float()
        pixel = (diff * diff if self.error == "squared" else diff.abs()).mean(1)
        pixel = gaussian_blur(pixel, self.sigma)
        flat = pixel.flatten(1)
        if self.reduction == "mean":
            image = flat.mean(1)
        elif self.reduction == "max":
            image = flat.amax(1)
        else:
            k = max(1, int(round(self.topk_fraction * flat.shape[1])))
            image = flat.topk(k, dim=1).values.mean(1)
        mem = outputs.get("memory")
        if self.entropy_weight and mem is not None and mem.sample_entropy is not None:
            image = image + self.entropy_weight * mem.sample_entropy.float()
        return Scores(image, pixel)
