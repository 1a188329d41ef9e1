"""Scoring a dataset with a trained model, choosing the threshold on held-out normal images, and the
metrics of a test set."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import metrics as M
from ..components import Scorer
from ..model import ReconModel
from .progress import ScoreProgress
from .runtime import RunError, flush_denormals

__all__ = ["MIN_HOLDOUT", "ScoreSet", "batch_scores", "calibrate", "check_finite", "compute_metrics", "finalize_scores",
           "fit_references",
           "fixed_thresholds", "score_dataset"]


# Fewer held-out normal images than this make a quantile threshold a guess (the 0.99 quantile of 3 scores is
# their maximum): the metrics at it say so.
MIN_HOLDOUT = 20


def _constant(x: np.ndarray) -> bool:
    """Every value equal (up to rounding): the scores cannot rank anything."""
    return x.size > 1 and float(np.ptp(x)) <= 1e-5 * max(1e-12, float(np.abs(x).max()))


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
    parts: dict[str, list[str]] = field(default_factory=dict)   # scorer name -> its parts (keys "{name}_{part}")

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


def batch_scores(model: ReconModel, outputs: dict[str, Any], parts_of: dict[str, list[str]]
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """A batch's image scores by name (each scorer's, then its parts as ``f"{scorer}_{part}"``) and the pixel
    maps of the first scorer that gives them. ``parts_of`` collects each scorer's part names; a scorer must
    give the same parts for every batch."""
    scores: dict[str, torch.Tensor] = {}
    maps = None
    for name, sc in model.score(outputs).items():
        scores[name] = sc.image
        parts = list(sc.parts or {})
        if parts_of.setdefault(name, parts) != parts:
            raise RunError(f"scorer {name!r} returned parts {parts} for one batch and {parts_of[name]} for "
                           f"another; a scorer must give the same parts for every batch")
        for part in parts:
            scores[f"{name}_{part}"] = sc.parts[part]
        if maps is None and sc.pixel is not None:
            maps = sc.pixel
    return scores, maps


def finalize_scores(model: ReconModel, image: dict[str, np.ndarray], parts_of: dict[str, list[str]]
                    ) -> dict[str, np.ndarray]:
    """The set-level step: every scorer's ``Scorer.finalize`` gets its scores over the whole set (key
    ``"image"`` and one key per part) and returns them, e.g. min-max normalised over the set."""
    out = dict(image)
    for name, scorer in zip(model.scorer_names, model.scorers):
        if name not in image:
            continue
        keys = {"image": name, **{p: f"{name}_{p}" for p in parts_of.get(name, [])}}
        result = scorer.finalize({k: image[full] for k, full in keys.items()})
        if not isinstance(result, dict) or set(result) != set(keys):
            got = sorted(result) if isinstance(result, dict) else type(result).__name__
            raise RunError(f"scorer {name!r}: finalize() must return the keys {sorted(keys)}, got {got}")
        for k, full in keys.items():
            v = np.asarray(result[k], dtype=np.float64)
            if v.shape != image[full].shape:
                raise RunError(f"scorer {name!r}: finalize() returned {k!r} of shape {v.shape}, expected "
                               f"{image[full].shape}")
            out[full] = v
    return out


def fit_references(model: ReconModel, holdout: Dataset, device: torch.device, batch_size: int) -> bool:
    """``Scorer.fit_reference`` for every scorer that overrides it: forget the old reference, score the
    held-out normal images raw, hand each scorer its raw scores. True when some scorer's scores changed."""
    fitting = [(n, s) for n, s in zip(model.scorer_names, model.scorers)
               if type(s).fit_reference is not Scorer.fit_reference]
    if not fitting:
        return False
    for _, scorer in fitting:
        scorer.fit_reference(None)
    raw = score_dataset(model, holdout, device, batch_size, keep_maps=False, keep_masks=False,
                        where="held-out normal images", finalize=False)
    changed = False
    for name, scorer in fitting:
        keys = {"image": name, **{p: f"{name}_{p}" for p in raw.parts.get(name, [])}}
        changed |= bool(scorer.fit_reference({k: raw.image[full] for k, full in keys.items()}))
    return changed


def fixed_thresholds(model: ReconModel) -> dict[str, float]:
    """Thresholds that scorers fix themselves (``Scorer.fixed_threshold``, e.g. paper 000's gamma on
    normalised scores) instead of the quantile of held-out normal scores."""
    return {name: float(scorer.fixed_threshold) for name, scorer in zip(model.scorer_names, model.scorers)
            if scorer.fixed_threshold is not None}


@torch.no_grad()
def score_dataset(model: ReconModel, dataset: Dataset, device: torch.device, batch_size: int = 64,
                  keep_maps: bool = True, keep_masks: bool = True, num_workers: int = 0,
                  where: str = "scoring", finalize: bool = True) -> ScoreSet:
    was_training = model.training
    model.eval()
    image: dict[str, list[np.ndarray]] = {}
    parts_of: dict[str, list[str]] = {}
    pixel: list[np.ndarray] = []
    labels, masks, paths, defects = [], [], [], []
    bar = ScoreProgress(where, len(dataset) if hasattr(dataset, "__len__") else None)
    try:
        with flush_denormals(device):   # subnormal weights: see flush_denormals
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                generator=torch.Generator())  # leaves the global RNG alone
            for batch in loader:
                x = batch["image"]
                check_finite(x, list(batch["path"]), where)
                scores, maps = batch_scores(model, model(x.to(device, non_blocking=True)), parts_of)
                for name, v in scores.items():
                    image.setdefault(name, []).append(v.double().cpu().numpy())
                if keep_maps and maps is not None:
                    pixel.append(maps.float().cpu().numpy())
                labels.append(np.asarray(batch["label"], dtype=np.int64))
                if keep_masks:
                    masks.append((batch["mask"][:, 0] > 0.5).numpy().astype(np.uint8))
                paths += list(batch["path"])
                defects += list(batch["defect"])
                bar.update(x.shape[0])
    finally:
        bar.close()
        model.train(was_training)
    cat = lambda xs: np.concatenate(xs) if xs else None  # noqa: E731
    names = list(image) or list(model.scorer_names)
    merged = {n: cat(image[n]) if image.get(n) else np.zeros(0) for n in names}
    if finalize:
        merged = finalize_scores(model, merged, parts_of)
    return ScoreSet(names, merged, cat(pixel),
                    cat(labels) if labels else np.zeros(0, np.int64), cat(masks), paths, defects, parts_of)


def _holdout_warnings(n: int, holdout: ScoreSet | None) -> list[str]:
    out = []
    if n < MIN_HOLDOUT:
        out.append(f"the thresholds come from only {n} held-out normal image(s) (fewer than {MIN_HOLDOUT}): F1, "
                   f"TPR and TNR at them are unreliable; raise data.holdout_fraction or add normal training images")
    if holdout is not None and _constant(holdout.primary):
        out.append(f"every held-out normal image has the same {holdout.names[0]} score "
                   f"({float(holdout.primary[0]):.6g}): the model does not tell images apart (constant or blank "
                   f"training images?), so its thresholds mean nothing")
    return out


def calibrate(holdout: ScoreSet, quantile: float, fixed: dict[str, float] | None = None, *,
              rule: str = "quantile", alpha: float = 0.05, validation: ScoreSet | None = None,
              pixel_rule: str = "quantile", min_area: int = 10) -> dict[str, Any]:
    """Image thresholds (``reconad.thresholds``), by ``rule``: the ``quantile`` of held-out normal scores, the
    split-conformal threshold at false-alarm rate ``alpha`` on them (``"conformal"``), or the best F1 on the
    labelled ``validation`` scores (``"f1"``; never the test set); a scorer's own value (``fixed``, by score
    name) replaces its rule. The pixel threshold, by ``pixel_rule``: the ``quantile`` of the held-out maps'
    pixels, or paper 004's connected-component rule (``"area"``, components of more than ``min_area``)."""
    from ..thresholds import F1, Area, Conformal, Quantile

    n = int(holdout.primary.size)
    if n == 0:
        raise RunError("no held-out normal images to choose the threshold on; raise data.holdout_fraction "
                       "or add normal training images")
    if rule == "conformal" and n < Conformal.min_calibration(alpha):
        raise RunError(f"test.threshold=conformal with test.alpha={alpha} needs at least "
                       f"{Conformal.min_calibration(alpha)} held-out normal images, the dataset held out {n}; "
                       f"raise data.holdout_fraction or test.alpha")
    if rule == "f1" and (validation is None or len(set(validation.labels.tolist())) != 2):
        raise RunError("test.threshold=f1 needs the scores of a labelled validation split with normal and "
                       "anomalous images; use test.threshold=quantile or conformal")

    def fit(name: str) -> float:
        if rule == "f1":
            return float(F1().fit(validation.image[name], validation.labels).threshold_)
        made = Conformal(alpha) if rule == "conformal" else Quantile(quantile)
        return float(made.fit(holdout.image[name]).threshold_)

    out: dict[str, Any] = {
        "method": {"conformal": "split-conformal on held-out normal scores",
                   "f1": "best F1 on the labelled validation split"}.get(rule, "quantile of held-out normal scores"),
        **({"alpha": alpha} if rule == "conformal" else {"quantile": quantile}),
        "n_holdout": n,
        "thresholds": {name: fit(name) for name in holdout.names},
    }
    if rule == "f1":
        out["n_validation"] = int(validation.labels.size)
    if fixed:
        out["thresholds"].update({n: float(v) for n, v in fixed.items()})
        out["fixed"] = sorted(fixed)
    out["threshold"] = out["thresholds"][holdout.names[0]]
    out["warnings"] = _holdout_warnings(out["n_holdout"], holdout)
    if holdout.pixel is not None and pixel_rule == "area":
        out["pixel_threshold"] = float(Area(min_area).fit(holdout.pixel).threshold_)
        out["pixel_rule"] = {"rule": "area", "min_area": min_area}
    elif holdout.pixel is not None:
        out["pixel_threshold"] = float(np.quantile(holdout.pixel.astype(np.float64), quantile))
    return out


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def metric_warnings(test: ScoreSet, calibration: dict[str, Any]) -> list[str]:
    """What makes these metrics misleading, in words (metrics.json ``warnings``, printed by the commands):
    scores that are all equal (degenerate data), and thresholds from fewer than ``MIN_HOLDOUT`` held-out
    normal images."""
    # a calibration from before warnings were kept: what its image count says
    out = list(calibration["warnings"] if "warnings" in calibration
               else _holdout_warnings(calibration.get("n_holdout", MIN_HOLDOUT), None))
    if _constant(test.primary):
        out.append(f"every test image has the same {test.names[0]} score ({float(test.primary[0]):.6g}): the "
                   f"model does not tell images apart (constant or blank training images?), so AUROC, F1, TPR "
                   f"and TNR mean nothing")
    if test.pixel is not None and test.pixel.size and _constant(test.pixel.reshape(-1)):
        out.append(f"every pixel of every test anomaly map has the same value ({float(test.pixel.flat[0]):.6g}): "
                   f"pixel AUROC and AUPRO mean nothing")
    return out


def compute_metrics(test: ScoreSet, calibration: dict[str, Any], fpr_limit: float = 0.3) -> dict[str, Any]:
    """``image_auroc`` (primary scorer), per-scorer AUROCs, F1/TPR/TNR at the calibrated threshold, and
    ``pixel_auroc`` / ``aupro`` when the test set has ground-truth masks with anomalous pixels."""
    labels = test.labels
    result: dict[str, Any] = {"n_test": int(labels.size), "n_anomalous": int(labels.sum())}
    two_classes = 0 < labels.sum() < labels.size
    if not two_classes:
        warnings.warn("the test set has only one class of images: image AUROC is undefined", stacklevel=2)
    result["warnings"] = metric_warnings(test, calibration)
    per: dict[str, dict[str, Any]] = {}
    for name in test.names:
        s = test.image[name]
        thr = calibration["thresholds"].get(name)
        entry: dict[str, Any] = {"image_auroc": _finite(M.auroc(s, labels)) if two_classes else None,
                                 "threshold": thr}
        if thr is not None and two_classes:   # TPR, TNR and F1 need both classes too
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
