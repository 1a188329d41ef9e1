"""ODDObjects' anomaly score (Algorithm 2): ``||x - x_hat||^2 + alpha E(w_hat)``, min-max normalised to
[0, 1] over the scored set, an anomaly where it exceeds gamma (0.9, found empirically by the authors)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reconad.components import Scorer, Scores
from reconad.metrics import normalize_scores

from .objective import squared_error

__all__ = ["ODDScorer", "is_anomaly"]


class ODDScorer(Scorer):
    """ODDObjects' Algorithm 2 score: squared error + alpha x entropy, normalised to [0, 1] over the set.

    Image score = summed squared error + ``entropy_weight`` x the memory's per-image addressing
    entropy; pixel map = squared error averaged over channels. With ``normalize`` the engine's ``finalize``
    rescales each scored set's scores to [0, 1] and the threshold is ``gamma`` on that scale."""

    def __init__(self, entropy_weight: float = 0.0002, gamma: float = 0.9, normalize: bool = True) -> None:
        super().__init__()
        if entropy_weight < 0:
            raise ValueError(f"odd_score: entropy_weight (alpha) must be >= 0, got {entropy_weight}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"odd_score: gamma must be in [0, 1] (a threshold on normalised scores), got {gamma}")
        self.alpha, self.gamma, self.normalize = float(entropy_weight), float(gamma), normalize
        # read by the engine: the threshold on the finalised (normalised) scale instead of a held-out quantile
        self.fixed_threshold: float | None = self.gamma if normalize else None

    def forward(self, outputs: dict[str, Any]) -> Scores:
        err = squared_error(outputs)
        diff = outputs["recon"].float() - outputs["input"].float()
        pixel = diff.pow(2).mean(1)
        mem = outputs.get("memory")
        ent = mem.sample_entropy.float() if mem is not None and mem.sample_entropy is not None else None
        image = err if ent is None or not self.alpha else err + self.alpha * ent
        if ent is None:
            return Scores(image, pixel)
        # with a memory, the two terms are also reported on their own (scores.csv columns, their AUROCs)
        return Scores(image, pixel, {"error": err, "entropy": ent})

    def finalize(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Min-max normalisation of every score over the whole scored set (Algorithm 2's probabilistic scale)."""
        if not self.normalize:
            return scores
        return {key: normalize_scores(values) for key, values in scores.items()}


def is_anomaly(scores: np.ndarray | torch.Tensor, gamma: float = 0.9) -> np.ndarray:
    """Algorithm 2's decision on a scored set: normalised score > ``gamma``."""
    return normalize_scores(scores) > gamma
