"""``oled_video_patches``: training data for OLED's video novelty detection (paper 001, §4.4).

Frames of normal video (``data.root``: a folder of frame images or a video file) cut into ``patch`` x
``patch`` patches (30 in the paper) on a ``stride`` grid and resized to ``data.image_size``; a seeded
``data.holdout_fraction`` of them is held out for the threshold. With ``test_frames`` (and ``test_labels``, one
0/1 per frame) the test split holds every patch of the test frames labelled with its frame's label (patch-level
metrics are only a proxy: ``reconad oled video`` gives the paper's frame-level AUROC / EER).
"""
from __future__ import annotations

import numpy as np
import torch

from reconad.data.base import (NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings,
                               holdout_count, resize_images)
from reconad.data.video import read_frame_labels, read_frames

from .evaluate import patchify

__all__ = ["video_patches"]


def _patches(source: str, settings: DataSettings, patch: int, stride: int | None,
             frame_size: list[int] | None) -> tuple[torch.Tensor, list[str], int]:
    frames, names = read_frames(source, size=tuple(frame_size) if frame_size else None,
                                channels=settings.channels or 1)
    try:
        p = patchify(frames, patch, stride)
    except ValueError as exc:
        raise DataError(f"data.patch: {exc}") from exc
    t, n = p.shape[:2]
    flat = resize_images(p.reshape(t * n, *p.shape[2:]), settings.image_size)
    paths = [f"{name}#p{j}" for name in names for j in range(n)]
    return flat, paths, n


def video_patches(settings: DataSettings, test_frames: str | None = None, test_labels: str | None = None,
                  patch: int = 30, stride: int | None = None, frame_size: list[int] | None = None
                  ) -> DatasetSplits:
    """Patches of normal video frames (``data.root``) for training; patches of ``test_frames`` to test.

    Args:
        test_frames: a folder of frame images or a video file to test on (null: the test split is the holdout).
        test_labels: per-frame 0/1 labels of ``test_frames`` (text/CSV one per line, or .npy).
        patch: patch side in frame pixels (30 in the paper); stride: grid step (null: ``patch``).
        frame_size: [H, W] every frame is resized to before cutting (null: as read).
    """
    check_settings(settings)
    if not settings.root:
        raise DataError("data.root: oled_video_patches needs the normal training frames (a folder of frame "
                        "images or a video file)")
    images, paths, _ = _patches(settings.root, settings, patch, stride, frame_size)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(images.shape[0])
    n_hold = holdout_count(images.shape[0], settings.holdout_fraction, "oled_video_patches")
    hold, train = np.sort(order[:n_hold]), np.sort(order[n_hold:])

    def split(index: np.ndarray, imgs: torch.Tensor, names: list[str], labels: list[int]) -> TensorImageDataset:
        idx = torch.from_numpy(index)
        return TensorImageDataset(imgs[idx], [labels[i] for i in index], [names[i] for i in index],
                                  [NORMAL if labels[i] == 0 else "anomalous_frame" for i in index])

    zeros = [0] * images.shape[0]
    train_ds, hold_ds = split(train, images, paths, zeros), split(hold, images, paths, zeros)
    test_ds = hold_ds
    if test_frames:
        timgs, tpaths, per_frame = _patches(test_frames, settings, patch, stride, frame_size)
        n_frames = timgs.shape[0] // per_frame
        frame_labels = read_frame_labels(test_labels, n_frames) if test_labels else np.zeros(n_frames, np.int64)
        labels = np.repeat(frame_labels, per_frame).tolist()
        test_ds = split(np.arange(timgs.shape[0]), timgs, tpaths, labels)
    elif test_labels:
        raise DataError("data.test_labels: given without data.test_frames")
    return DatasetSplits(train=train_ds, holdout=hold_ds, test=test_ds, channels=settings.channels or 1,
                         image_size=settings.image_size, has_masks=False, skipped=[])
