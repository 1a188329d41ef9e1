"""The built-in evaluator: image AUROC per defect type (``test.evaluators: [per_defect]``)."""
from __future__ import annotations

import numpy as np

from ..components import EvalRun, Evaluator
from ..data.base import NORMAL
from ..metrics import auroc

__all__ = ["PerDefectAUROC"]


class PerDefectAUROC(Evaluator):
    """Image AUROC of the normal test images against each defect type's (test/<defect>/; on digits, each other
    digit)."""

    def __init__(self, min_images: int = 1):
        if min_images < 1:
            raise ValueError(f"per_defect: min_images must be at least 1, got {min_images}")
        self.min_images = min_images

    def evaluate(self, run: EvalRun) -> dict[str, float | None]:
        s = run.scores
        defects = np.asarray(s.defects if s.defects else [], dtype=object)
        normal = s.primary[s.labels == 0]
        if defects.size != s.primary.size or normal.size == 0:
            return {}
        out: dict[str, float | None] = {}
        for kind in sorted(set(defects[s.labels == 1].tolist())):
            if kind == NORMAL:
                continue
            bad = s.primary[(defects == kind) & (s.labels == 1)]
            if bad.size >= self.min_images:
                out[str(kind)] = auroc(np.concatenate([normal, bad]),
                                       np.r_[np.zeros(normal.size), np.ones(bad.size)])
        return out
