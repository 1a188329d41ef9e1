"""OLED's further evaluation: the Mask Module as a segmenter (§4.5).

``segmentation_auroc(model, dataset)``: pixel AUROC of MM's activation map ``A`` against the non-zero pixels
of each image (MNIST digits), separately for inliers (label 0) and outliers (label 1); ``SegmentationEvaluator``
measures it on every tested run whose config lists ``test.evaluators: [oled_segmentation]``. Video novelty detection
(§4.4) is the core's video protocol: ``reconad run configs/oled/video.yaml``, then ``reconad video RUN FRAMES``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reconad import metrics as M
from reconad.components import EvalRun, Evaluator

from .model import MaskModule

__all__ = ["SegmentationEvaluator", "segmentation_auroc"]


def _mask_module(model: torch.nn.Module) -> MaskModule:
    mm = model if isinstance(model, MaskModule) else getattr(getattr(model, "module", model), "masker", None)
    if not isinstance(mm, MaskModule):
        raise ValueError(f"segmentation: needs an OLED Mask Module (model.masker: oled), got "
                         f"{type(mm).__name__ if mm is not None else 'a model without masker'}")
    return mm


@torch.no_grad()
def segmentation_auroc(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 256,
                       device: str | torch.device = "cpu", foreground: float = 0.0) -> dict[str, float | None]:
    """§4.5: pixel AUROC of the activation map ``A`` against ground truth ``image > foreground`` (the non-zero
    pixels of a digit, any channel), for inliers and outliers separately (None when a group is empty)."""
    mm = _mask_module(model)
    was = mm.training
    mm.eval()
    maps: dict[int, list[np.ndarray]] = {0: [], 1: []}
    truth: dict[int, list[np.ndarray]] = {0: [], 1: []}
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x = batch["image"].to(device)
            a = mm.activation(x)[:, 0].float().cpu().numpy()
            gt = (x.amax(1) > foreground).cpu().numpy().astype(np.uint8)
            for lab in (0, 1):
                sel = np.asarray(batch["label"]) == lab
                if sel.any():
                    maps[lab].append(a[sel])
                    truth[lab].append(gt[sel])
    finally:
        mm.train(was)
    out: dict[str, float | None] = {}
    for lab, key in ((0, "inlier"), (1, "outlier")):
        if not maps[lab]:
            out[key] = None
            continue
        out[key] = float(M.pixel_auroc(np.concatenate(maps[lab]), np.concatenate(truth[lab])))
    return out


class SegmentationEvaluator(Evaluator):
    """§4.5: the Mask Module's pixel AUROC against the non-zero pixels, test inliers and outliers."""

    def __init__(self, foreground: float = 0.0):
        self.foreground = foreground

    def check(self, model: torch.nn.Module) -> None:
        _mask_module(model)

    def evaluate(self, run: EvalRun) -> dict[str, float | None]:
        return segmentation_auroc(run.model, run.splits.test, batch_size=run.batch_size, device=run.device,
                                  foreground=self.foreground)
