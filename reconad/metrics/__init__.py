"""Every number the papers report, computed exactly: image- and pixel-level AUROC, ROC / PRO curves,
AUPRO (MVTec AD protocol; C++ / CUDA kernels, see ``reconad.ops.pro_curve``), EER, F1, TPR / TNR, the
confusion counts and rates of given decisions, label-free thresholds and the area rule's segmentation, plots, and a streaming ``AUPRO`` for distributed evaluation.

Inputs are numpy arrays or torch tensors (CPU or CUDA). See docs/metrics.md.
"""
from __future__ import annotations

from ._image import Confusion, auroc, confusion, decision_rates, eer, f1_max, f1_score, roc_curve, tpr_tnr
from ._pro import aupro, pixel_auroc, pro_curve
from .plots import plot_pro, plot_roc
from .ssim import ssim, ssim_map
from .streaming import AUPRO
from .thresholds import (area_segmentation, area_threshold, largest_component_area, normalize_scores,
                         normalized_score_threshold, quantile_threshold)

__all__ = [
    "AUPRO",
    "Confusion",
    "area_segmentation",
    "area_threshold",
    "aupro",
    "auroc",
    "confusion",
    "decision_rates",
    "eer",
    "f1_max",
    "f1_score",
    "largest_component_area",
    "normalize_scores",
    "normalized_score_threshold",
    "pixel_auroc",
    "plot_pro",
    "plot_roc",
    "pro_curve",
    "quantile_threshold",
    "roc_curve",
    "ssim",
    "ssim_map",
    "tpr_tnr",
]
