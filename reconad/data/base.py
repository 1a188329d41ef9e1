"""What every reconad dataset provides: settings in, train / holdout / test splits out.

Every item is a dict::

    {"image": float32 (C, H, W) in [0, 1], "label": 0 normal | 1 anomalous,
     "mask": float32 (1, H, W) of 0/1 (all zeros for normal images and without ground truth),
     "path": file path or a stable synthetic id, "defect": "good" for normal images}

so ``torch.utils.data.default_collate`` batches them (strings become lists).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .._imagefiles import DataError

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DataError",
    "DataSettings",
    "DatasetSplits",
    "TensorImageDataset",
    "check_settings",
    "holdout_count",
    "image_size",
    "own_size",
    "resize_images",
    "resize_masks",
    "to_channels",
]

NORMAL = "good"

# data.image_size where the images have no one square size of their own (and the config sets none)
DEFAULT_IMAGE_SIZE = 64


@dataclass
class DataSettings:
    """The core fields of the config's ``data:`` section."""

    name: str
    root: str | None = None
    normal_class: int | None = None      # digits
    category: str | None = None          # textures: brick|grass|gravel; folder: optional sub-folder
    image_size: int | None = None        # images are resized to image_size x image_size; null: the training
    #                                      images' own size when they share one square size, else 64
    channels: int | None = None          # None = the dataset's own (1 or 3); 1 or 3 converts
    holdout_fraction: float = 0.1        # fraction of normal training images held out (threshold choice)
    skip_bad: bool = False               # skip unreadable images (and list them) instead of failing
    seed: int = 0


class DatasetSplits(NamedTuple):
    train: Dataset        # normal images only
    holdout: Dataset      # held-out normal images (never used for training; thresholds are chosen on them)
    test: Dataset         # normal + anomalous
    channels: int
    image_size: int
    has_masks: bool       # True when test has pixel ground truth
    skipped: list[str]    # files skipped with skip_bad ("path: reason")
    validation: Dataset | None = None   # optional labelled normal + anomalous images for model selection
    #                                     (train.select_every); never trained on, disjoint from test
    own_size: int | None = None         # the training images' own side when they share one square size
    #                                     (what data.image_size: null resizes to); None when they do not


def check_settings(settings: DataSettings) -> None:
    """Reject the settings every dataset uses when they are out of range."""
    size = settings.image_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 4):
        raise DataError(f"data.image_size: expected an int >= 4 or null (the images' own size), got {size!r}")
    if settings.channels not in (None, 1, 3):
        raise DataError(f"data.channels: expected 1, 3 or null (the dataset's own), got {settings.channels!r}")
    f = settings.holdout_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
        raise DataError(f"data.holdout_fraction: expected a number in (0, 1), got {f!r} "
                        "(thresholds are chosen on held-out normal images, so some must be held out)")


def own_size(sizes: Iterable[tuple[int, int]]) -> int | None:
    """The side of images that all have one square size, else None (several sizes, or not square)."""
    distinct = set(sizes)
    if len(distinct) != 1:
        return None
    h, w = distinct.pop()
    return h if h == w else None


def image_size(settings: DataSettings, own: int | None) -> int:
    """The side a dataset resizes to: ``data.image_size``, else the images' ``own`` size, else 64."""
    return settings.image_size or own or DEFAULT_IMAGE_SIZE


def holdout_count(n: int, fraction: float, what: str) -> int:
    """How many of ``n`` normal training images to hold out: at least one, leaving at least one to train on."""
    if n < 2:
        raise DataError(f"{what}: {n} normal training image(s), need at least 2 "
                        "(one to train on, one held out to choose the threshold)")
    return min(n - 1, max(1, round(fraction * n)))


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) with C in {1, 3} -> ``channels``: grey is repeated, RGB -> ITU-R 601 luma (as Pillow's "L")."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * w).sum(1, keepdim=True)
    raise DataError(f"cannot convert {c}-channel images to {channels} channels (expected 1 or 3)")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (N, C, size, size): antialiased bilinear, like Pillow's resize."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, H, W) 0/1 masks -> (N, 1, size, size) 0/1, nearest neighbour so they stay binary."""
    if masks.shape[-2:] == (size, size):
        return masks
    return F.interpolate(masks.float(), size=(size, size), mode="nearest-exact").to(masks.dtype)


class TensorImageDataset(Dataset):
    """Images held in memory as one tensor (small built-in datasets)."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], paths: Sequence[str],
                 defects: Sequence[str], masks: torch.Tensor | None = None) -> None:
        n = images.shape[0]
        if images.dim() != 4 or not (len(labels) == len(paths) == len(defects) == n):
            raise ValueError(f"TensorImageDataset: images must be (N, C, H, W) with N labels, paths and defects, "
                             f"got images {tuple(images.shape)}, {len(labels)} labels, {len(paths)} paths, "
                             f"{len(defects)} defects")
        if masks is not None and masks.shape != (n, 1, *images.shape[-2:]):
            raise ValueError(f"TensorImageDataset: masks must be {(n, 1, *images.shape[-2:])}, "
                             f"got {tuple(masks.shape)}")
        self.images = images.float().contiguous()
        self.labels = [int(v) for v in labels]
        self.paths = list(paths)
        self.defects = list(defects)
        self.masks = None if masks is None else masks.to(torch.uint8).contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict:
        image = self.images[i]
        if self.masks is None:
            mask = image.new_zeros((1, *image.shape[-2:]))
        else:
            mask = self.masks[i].float()
        return {"image": image, "label": self.labels[i], "mask": mask,
                "path": self.paths[i], "defect": self.defects[i]}
