"""ODDObjects' anomaly score (Algorithm 2): ``||x - x_hat||^2 + alpha E(w_hat)``.

Which images are flagged (``threshold``):

* ``"holdout"`` (the default): the raw score, thresholded like every other reconad scorer at the quantile of
  held-out normal images' scores (label-free, chosen once, the same for every scored set).
* ``"gamma"``: the paper's rule as the paper applies it: the scores min-max normalised to [0, 1] over the
  scored set, an anomaly where the normalised score exceeds gamma (0.9, found empirically by the authors).
  The normalisation is per set, so the rule flags the top of each set's range whatever the set holds: on a
  test set where anomalies are common (one-class MNIST: 90%) it flags almost nothing (F1 about 0.002).

AUROC is the same under both: min-max normalisation is monotone within a set.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reconad.components import Scorer, Scores
from reconad.metrics import normalize_scores

from .objective import squared_error

__all__ = ["ODDScorer", "is_anomaly"]


THRESHOLD_RULES = ("holdout", "gamma")


class ODDScorer(Scorer):
    """ODDObjects' Algorithm 2 score: squared error + alpha x entropy.

    Image score = summed squared error + ``entropy_weight`` x the memory's per-image addressing
    entropy; pixel map = squared error averaged over channels. ``threshold: holdout`` (default) keeps the raw
    score and the engine's held-out quantile threshold; ``threshold: gamma`` is Algorithm 2's rule: ``finalize``
    rescales each scored set's scores to [0, 1] and the threshold is ``gamma`` on that scale."""

    def __init__(self, entropy_weight: float = 0.0002, gamma: float = 0.9, threshold: str = "holdout") -> None:
        super().__init__()
        if entropy_weight < 0:
            raise ValueError(f"odd_score: entropy_weight (alpha) must be >= 0, got {entropy_weight}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"odd_score: gamma must be in [0, 1] (a threshold on normalised scores), got {gamma}")
        if threshold not in THRESHOLD_RULES:
            raise ValueError(f"odd_score: threshold must be 'holdout' (the held-out quantile, the default) or "
                             f"'gamma' (the paper's Algorithm 2 rule), got {threshold!r}")
        self.alpha, self.gamma, self.threshold = float(entropy_weight), float(gamma), threshold
        self.normalize = threshold == "gamma"
        # read by the engine: the paper's threshold on the finalised (normalised) scale replaces the quantile
        self.fixed_threshold: float | None = self.gamma if self.normalize else None
        self.set_level = self.normalize   # an image's normalised score depends on its set

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
        """With ``threshold: gamma``, min-max normalisation of every score over the whole scored set (Algorithm
        2's probabilistic scale); otherwise the scores unchanged."""
        if not self.normalize:
            return scores
        return {key: normalize_scores(values) for key, values in scores.items()}


def is_anomaly(scores: np.ndarray | torch.Tensor, gamma: float = 0.9) -> np.ndarray:
    """Algorithm 2's decision on a scored set: normalised score > ``gamma``."""
    return normalize_scores(scores) > gamma
