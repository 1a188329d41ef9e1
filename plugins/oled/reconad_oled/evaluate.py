"""OLED's further evaluations: the Mask Module as a segmenter (§4.5) and video novelty detection (§4.4).

* ``segmentation_auroc(model, dataset)``: pixel AUROC of MM's activation map ``A`` against the non-zero
  pixels of each image (MNIST digits), separately for inliers (label 0) and outliers (label 1).
* ``score_video(model, frames)``: every frame cut into ``patch`` x ``patch`` patches (30 x 30 in the paper),
  each scored by the model's OLED scorer, the four scores finalised (min-max) over all patches of the video,
  and a frame's score = the maximum over its patches. ``video_metrics`` gives frame-level AUROC and EER.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from reconad import metrics as M

from .model import MaskModule
from .scorer import OLEDScorer

__all__ = ["frame_scores", "patchify", "score_patches", "score_video", "segmentation_auroc", "video_metrics"]

SCORE_NAMES = ("avg", "mask", "cont", "rec")


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


def patchify(frames: torch.Tensor, patch: int = 30, stride: int | None = None) -> torch.Tensor:
    """(T, C, H, W) -> (T, P, C, patch, patch): the patches of every frame on a regular grid (``stride``
    defaults to ``patch``: non-overlapping; the right / bottom remainder smaller than a patch is dropped)."""
    if frames.dim() != 4:
        raise ValueError(f"patchify: frames must be (T, C, H, W), got shape {tuple(frames.shape)}")
    stride = stride or patch
    t, c, h, w = frames.shape
    if patch < 1 or stride < 1 or patch > h or patch > w:
        raise ValueError(f"patchify: patch {patch} (stride {stride}) does not fit frames of {h}x{w}")
    cols = F.unfold(frames, kernel_size=patch, stride=stride)          # (T, C*p*p, P)
    return cols.transpose(1, 2).reshape(t, -1, c, patch, patch)


def frame_scores(patch_scores: np.ndarray) -> np.ndarray:
    """(T, P) patch scores -> (T,) frame scores: the maximum over the frame's patches (§4.4)."""
    s = np.asarray(patch_scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"frame_scores: expected (frames, patches) scores, got shape {s.shape}")
    return s.max(axis=1)


def _oled_scorer(model: torch.nn.Module) -> tuple[str, OLEDScorer]:
    for name, sc in zip(getattr(model, "scorer_names", []), getattr(model, "scorers", [])):
        if isinstance(sc, OLEDScorer):
            return name, sc
    raise ValueError("video scoring needs a model with the oled scorer (model.scorers: [oled])")


@torch.no_grad()
def score_patches(model: torch.nn.Module, patches: torch.Tensor, *, batch_size: int = 256,
                  device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Raw OLED terms of (N, C, S, S) patches (S = the model's image size): ``{"mask", "cont", "rec"}`` (N,)."""
    name, _ = _oled_scorer(model)
    was = model.training
    model.eval()
    raw: dict[str, list[np.ndarray]] = {"mask": [], "cont": [], "rec": []}
    try:
        for i in range(0, patches.shape[0], batch_size):
            sc = model.score(model(patches[i:i + batch_size].to(device)))[name]
            for k in raw:
                raw[k].append(sc.parts[k].double().cpu().numpy())
    finally:
        model.train(was)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in raw.items()}


def score_video(model: torch.nn.Module, frames: torch.Tensor, *, patch: int = 30, stride: int | None = None,
                image_size: int | None = None, batch_size: int = 256,
                device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Frame scores ``{"avg", "mask", "cont", "rec"}`` (T,) of frames (T, C, H, W) in [0, 1]: patches resized
    to the model's ``image_size`` when it differs from ``patch``, scores min-max scaled over all patches of the
    video, then the maximum over each frame's patches."""
    p = patchify(frames, patch, stride)
    t, n = p.shape[:2]
    flat = p.reshape(t * n, *p.shape[2:])
    if image_size and image_size != patch:
        flat = F.interpolate(flat, size=(image_size, image_size), mode="bilinear", antialias=True,
                             align_corners=False).clamp_(0.0, 1.0)
    raw = score_patches(model, flat, batch_size=batch_size, device=device)
    fin = _oled_scorer(model)[1].finalize({"image": np.zeros(t * n), **raw})
    named = {"avg": fin["image"], "mask": fin["mask"], "cont": fin["cont"], "rec": fin["rec"]}
    return {k: frame_scores(v.reshape(t, n)) for k, v in named.items()}


def video_metrics(scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Frame-level AUROC and EER of every score against 0/1 frame labels (1 = anomalous)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not 0 < labels.sum() < labels.size:
        raise ValueError(f"video metrics need normal and anomalous frames, got {int(labels.sum())} anomalous of "
                         f"{labels.size}")
    return {k: {"auroc": float(M.auroc(v, labels)), "eer": float(M.eer(v, labels))} for k, v in scores.items()}
