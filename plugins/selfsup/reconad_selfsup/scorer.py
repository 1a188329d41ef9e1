"""The anomaly heatmap of §3.1: ||F(X) - X||_2 over the channels at every pixel, Gaussian-smoothed.

The core ``l2`` scorer averages squared (or absolute) errors over channels; for colour images that is not
the Euclidean norm over channels, hence this scorer (for grey images the two maps are monotone in each other).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from reconad.components import Scorer, Scores
from reconad.imageops import gaussian_blur, reduce_map

__all__ = ["SelfSupScorer", "heatmap"]


def heatmap(recon: torch.Tensor, image: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """``(B, H, W)``: the L2 norm over channels of ``recon - image``, smoothed with a Gaussian of ``sigma`` pixels."""
    diff = recon.float() - image.float()
    return gaussian_blur(torch.linalg.vector_norm(diff, ord=2, dim=1), sigma)


class SelfSupScorer(Scorer):
    """Heatmap ||F(X) - X||_2 over channels, Gaussian-smoothed (paper 004); image score = its max, mean, or
    mean of the top ``topk_fraction`` pixels."""

    def __init__(self, sigma: float = 2.0, reduction: Literal["max", "mean", "topk"] = "max",
                 topk_fraction: float = 0.01) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"selfsup scorer: sigma must be >= 0, got {sigma}")
        if not 0.0 < topk_fraction <= 1.0:
            raise ValueError(f"selfsup scorer: topk_fraction must be in (0, 1], got {topk_fraction}")
        self.sigma, self.reduction, self.topk_fraction = sigma, reduction, topk_fraction

    def forward(self, outputs: dict[str, Any]) -> Scores:
        pixel = heatmap(outputs["recon"], outputs["input"], self.sigma)
        return Scores(reduce_map(pixel, self.reduction, self.topk_fraction), pixel)
