"""Built-in scorers: per-pixel reconstruction error maps reduced to image scores."""
from __future__ import annotations

from typing import Any, Literal

from ..components import Scorer, Scores
from ..imageops import gaussian_blur, reduce_map

__all__ = ["ReconstructionErrorScorer"]


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
        image = reduce_map(pixel, self.reduction, self.topk_fraction)
        mem = outputs.get("memory")
        if self.entropy_weight and mem is not None and mem.sample_entropy is not None:
            image = image + self.entropy_weight * mem.sample_entropy.float()
        return Scores(image, pixel)
