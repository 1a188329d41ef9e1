"""The detection protocol of §4.2 (Bergmann et al.): a minimum component area, a pixel threshold fitted on
held-out normal heatmaps so that none of them has a connected component above that area, and then

* an image is anomalous iff its thresholded heatmap has an 8-connected component larger than ``min_area``;
* a pixel is anomalous iff it lies in such a component (the image's segmentation, Fig. 1 / Fig. 7).

TPR, TNR, their mean (Table 2) and F1 (Table 4) are counted over the test set, for images and for pixels
(accumulated over all test pixels). ``min_area`` is the paper's hand-set hyperparameter: a fraction of the
image area here (``min_area_fraction``), fixed before looking at any test image. Test labels are only
used to count. ``AreaRuleEvaluator`` measures it on every tested run whose config lists ``test.evaluators:
[area_rule]``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from reconad.components import EvalRun, Evaluator
from reconad.metrics import area_segmentation, area_threshold, confusion, decision_rates

__all__ = ["AREA_RULE_FILE", "AreaRuleEvaluator", "area_rule_from_model", "area_rule_metrics", "evaluate_run"]

AREA_RULE_FILE = "area_rule.json"


def area_rule_metrics(holdout_maps: Any, test_maps: Any, test_masks: Any | None, test_labels: Any, *,
                      min_area: int | None = None, min_area_fraction: float = 0.005) -> dict[str, Any]:
    """The paper's thresholded detection metrics.

    Args:
        holdout_maps: ``(N_h, H, W)`` heatmaps of held-out normal images (the threshold is fitted on them).
        test_maps: ``(N, H, W)`` heatmaps of the test images.
        test_masks: ``(N, H, W)`` ground-truth pixel masks, or None (no pixel metrics).
        test_labels: ``(N,)`` 0 normal / 1 anomalous.
        min_area: the minimum anomalous component area in pixels; None = ``min_area_fraction`` x H x W.

    Returns:
        ``pixel_threshold``, ``min_area``, ``image_{tpr,tnr,mean,f1}`` and (with masks)
        ``pixel_{tpr,tnr,mean,f1}``, plus the confusion counts under ``image_counts`` / ``pixel_counts``.
    """
    hold = np.asarray(holdout_maps, dtype=np.float64)
    test = np.asarray(test_maps, dtype=np.float64)
    labels = np.asarray(test_labels).astype(np.int64).ravel()
    if hold.ndim != 3 or test.ndim != 3 or hold.shape[1:] != test.shape[1:]:
        raise ValueError(f"area_rule_metrics: holdout_maps and test_maps must be (N, H, W) of one image size, got "
                         f"{hold.shape} and {test.shape}")
    if labels.shape[0] != test.shape[0]:
        raise ValueError(f"area_rule_metrics: {labels.shape[0]} test labels for {test.shape[0]} test maps")
    h, w = test.shape[1:]
    if min_area is None:
        if not 0.0 <= min_area_fraction < 1.0:
            raise ValueError(f"area_rule_metrics: min_area_fraction must be in [0, 1), got {min_area_fraction}")
        min_area = int(round(min_area_fraction * h * w))
    threshold = area_threshold(hold, int(min_area))
    seg = area_segmentation(test, threshold, int(min_area))
    out: dict[str, Any] = {"pixel_threshold": threshold, "min_area": int(min_area), "n_holdout": int(hold.shape[0]),
                           "n_test": int(test.shape[0])}
    _add_rates(out, "image", seg.reshape(seg.shape[0], -1).any(1), labels > 0)
    if test_masks is not None:
        masks = np.asarray(test_masks) > 0.5
        if masks.shape != test.shape:
            raise ValueError(f"area_rule_metrics: test_masks {masks.shape} must match test_maps {test.shape}")
        _add_rates(out, "pixel", seg, masks)
    return out


def _add_rates(out: dict[str, Any], level: str, predicted: np.ndarray, truth: np.ndarray) -> None:
    """``{level}_{tpr,tnr,mean,f1}`` (None where undefined) and ``{level}_counts`` into ``out``."""
    out.update({f"{level}_{k}": v for k, v in decision_rates(predicted, truth).items()})
    out[f"{level}_counts"] = confusion(predicted, truth)._asdict()


def evaluate_run(run_dir: str, *, min_area: int | None = None, min_area_fraction: float = 0.005,
                 device: str = "auto", write: bool = True) -> dict[str, Any]:
    """Load a finished run, score its held-out normal and test images, apply the area rule, and (``write``)
    save the result as ``area_rule.json`` in the run folder (atomically)."""
    from reconad.engine import load_trained
    from reconad.engine.trainer import build_data
    from reconad.io import write_json
    from reconad.plugins import get_registry

    registry = get_registry()
    ckpt = os.path.join(run_dir, "checkpoint.pt") if os.path.isdir(run_dir) else run_dir
    cfg, model = load_trained(ckpt, device, registry)[:2]
    dev = next(model.parameters()).device
    splits = build_data(cfg, registry)
    result = area_rule_from_model(model, splits, dev, batch_size=cfg.test.batch_size, min_area=min_area,
                                  min_area_fraction=min_area_fraction)
    if write:
        write_json(os.path.join(os.path.dirname(os.path.abspath(ckpt)), AREA_RULE_FILE), result)
    return result


def area_rule_from_model(model: Any, splits: Any, device: Any, *, batch_size: int = 64, min_area: int | None = None,
                         min_area_fraction: float = 0.005, test: Any | None = None) -> dict[str, Any]:
    """Score ``splits.holdout`` (and ``splits.test`` unless its ScoreSet ``test`` is given) with ``model`` (its
    first pixel-map scorer) and apply the area rule."""
    from reconad.engine.evaluate import score_dataset

    if test is None:
        test = score_dataset(model, splits.test, device, batch_size, keep_masks=splits.has_masks, where="test images")
    if test.pixel is None:
        raise ValueError("area rule: the model's scorers give no pixel maps; use the selfsup scorer")
    hold = score_dataset(model, splits.holdout, device, batch_size, keep_masks=False, where="held-out normal images")
    return area_rule_metrics(hold.pixel, test.pixel, test.masks if splits.has_masks else None, test.labels,
                             min_area=min_area, min_area_fraction=min_area_fraction)


class AreaRuleEvaluator(Evaluator):
    """§4.2's area rule: image and pixel TPR, TNR, their mean and F1 (threshold on held-out normal maps)."""

    def __init__(self, min_area: int | None = None, min_area_fraction: float = 0.005):
        if not 0.0 <= min_area_fraction < 1.0:
            raise ValueError(f"area_rule: min_area_fraction must be in [0, 1), got {min_area_fraction}")
        self.min_area, self.min_area_fraction = min_area, min_area_fraction

    def evaluate(self, run: EvalRun) -> dict[str, float | None]:
        out = area_rule_from_model(run.model, run.splits, run.device, batch_size=run.batch_size,
                                   min_area=self.min_area, min_area_fraction=self.min_area_fraction, test=run.scores)
        # the rates (pixel ones where the test set has masks); the threshold and counts: `reconad selfsup evaluate`
        rates = (f"{level}_{m}" for level in ("image", "pixel") for m in ("tpr", "tnr", "mean", "f1"))
        return {k: out[k] for k in rates if k in out}
