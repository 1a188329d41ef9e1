"""Scoring a dataset with a trained model, choosing the threshold on held-out normal images, and the
metrics of a test set."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import metrics as M
from ..model import ReconModel
from .runtime import RunError

__all__ = ["ScoreSet", "calibrate", "check_finite", "compute_metrics", "score_dataset"]


@dataclass
class ScoreSet:
    """Every image's scores (one array per scorer, the first is the primary score) and the primary pixel maps."""

    names: list[str]
    image: dict[str, np.ndarray]          # scorer name -> (N,) float64
    pixel: np.ndarray | None              # (N, H, W) float32, from the first scorer that gives maps
    labels: np.ndarray                    # (N,) int64
    masks: np.ndarray | None              # (N, H, W) uint8 when kept
    paths: list[str]
    defects: list[str]

    @property
    def primary(self) -> np.ndarray:
        return self.image[self.names[0]]


def check_finite(images: torch.Tensor, paths: list[str], where: str) -> None:
    """A batch with NaN/inf pixels is an error naming the files (they would poison training silently)."""
    bad = ~torch.isfinite(images.flatten(1)).all(1)
    if bool(bad.any()):
        names = [paths[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise RunError(f"{where}: image(s) with NaN or inf pixel values: {', '.join(names[:5])}"
                       f"{' ...' if len(names) > 5 else ''}; fix or remove them (or the dataset's transform)")


@torch.no_grad()
def score_dataset(model: ReconModel, dataset: Dataset, device: torch.device, batch_size: int = 64,
                  keep_maps: bool = True, keep_masks: bool = True, num_workers: int = 0,
                  where: str = "scoring") -> ScoreSet:
    was_training = model.training
    model.eval()
    names = list(model.scorer_names)
    image: dict[str, list[np.ndarray]] = {n: [] for n in names}
    pixel: list[np.ndarray] = []
    labels, masks, paths, defects = [], [], [], []
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            generator=torch.Generator())  # leaves the global RNG alone
        for batch in loader:
            x = batch["image"]
            check_finite(x, list(batch["path"]), where)
            out = model(x.to(device, non_blocking=True))
            maps = None
            for name, sc in model.score(out).items():
                image[name].append(sc.image.double().cpu().numpy())
                if maps is None and sc.pixel is not None:
                    maps = sc.pixel
            if keep_maps and maps is not None:
                pixel.append(maps.float().cpu().numpy())
            labels.append(np.asarray(batch["label"], dtype=np.int64))
            if keep_masks:
                masks.append((batch["mask"][:, 0] > 0.5).numpy().astype(np.uint8))
            paths += list(batch["path"])
            defects += list(batch["defect"])
    finally:
        model.train(was_training)
    cat = lambda xs: np.concatenate(xs) if xs else None  # noqa: E731
    return ScoreSet(names, {n: cat(v) if v else np.zeros(0) for n, v in image.items()}, cat(pixel),
                    cat(labels) if labels else np.zeros(0, np.int64), cat(masks), paths, defects)


def calibrate(holdout: ScoreSet, quantile: float) -> dict[str, Any]:
    """Thresholds from held-out normal images only (never test labels): the ``quantile`` of their scores."""
    if holdout.primary.size == 0:
        raise RunError("no held-out normal images to choose the threshold on; raise data.holdout_fraction "
                       "or add normal training images")
    out: dict[str, Any] = {
        "method": "quantile of held-out normal scores",
        "quantile": quantile,
        "n_holdout": int(holdout.primary.size),
        "thresholds": {n: float(M.quantile_threshold(holdout.image[n], quantile)) for n in holdout.names},
    }
    out["threshold"] = out["thresholds"][holdout.names[0]]
    if holdout.pixel is not None:
        out["pixel_threshold"] = float(np.quantile(holdout.pixel.astype(np.float64), quantile))
    return out


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def compute_metrics(test: ScoreSet, calibration: dict[str, Any], fpr_limit: float = 0.3) -> dict[str, Any]:
    """``image_auroc`` (primary scorer), per-scorer AUROCs, F1/TPR/TNR at the calibrated threshold, and
    ``pixel_auroc`` / ``aupro`` when the test set has ground-truth masks with anomalous pixels."""
    labels = test.labels
    result: dict[str, Any] = {"n_test": int(labels.size), "n_anomalous": int(labels.sum())}
    two_classes = 0 < labels.sum() < labels.size
    if not two_classes:
        warnings.warn("the test set has only one class of images: image AUROC is undefined", stacklevel=2)
    per: dict[str, dict[str, Any]] = {}
    for name in test.names:
        s = test.image[name]
        thr = calibration["thresholds"].get(name)
        entry: dict[str, Any] = {"image_auroc": _finite(M.auroc(s, labels)) if two_classes else None,
                                 "threshold": thr}
        if thr is not None and labels.size:
            tpr, tnr = M.tpr_tnr(s, labels, thr)
            entry.update({"tpr": _finite(tpr), "tnr": _finite(tnr),
                          "f1": _finite(M.f1_score(s, labels, thr))})
        per[name] = entry
    primary = per[test.names[0]]
    result["image_auroc"] = primary["image_auroc"]
    result["threshold"] = primary["threshold"]
    result.update({f"image_{k}": primary.get(k) for k in ("tpr", "tnr", "f1")})
    result["scorers"] = per
    if test.pixel is not None and test.masks is not None and test.masks.any() and not test.masks.all():
        result["pixel_auroc"] = _finite(M.pixel_auroc(test.pixel, test.masks))
        result["aupro"] = _finite(M.aupro(test.pixel, test.masks, fpr_limit=fpr_limit))
        result["aupro_fpr_limit"] = fpr_limit
    return result
