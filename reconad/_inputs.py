"""What ``reconad.Detector`` accepts as X, turned into reconad datasets (items as in ``reconad.data.base``).

X is a numpy array (N, H, W) or (N, H, W, C) of uint8 or floats in [0, 1], a torch tensor (N, C, H, W) of
floats in [0, 1], a list of image paths (or of arrays of one shape), a folder (every image under it,
recursively, as ``reconad predict`` reads one), or a torch ``Dataset`` whose items are (C, H, W) tensors or
dicts with an ``"image"`` tensor. Every image of one X has the same size and channels (an anomaly map is
returned at that size). A wrong X is a ``DataError`` naming what was expected.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ._imagefiles import GREY_MODES, DataError, array_images, check_values, image_names
from .data.base import DatasetSplits, TensorImageDataset, holdout_count, resize_images, to_channels

__all__ = ["Images", "as_images", "is_mvtec_folder", "split_normals"]

EXPECTED = ("a numpy array (N, H, W) or (N, H, W, C) of uint8 or floats in [0, 1], a torch tensor (N, C, H, W), "
            "a list of image paths, a folder of images, or a torch Dataset of (C, H, W) tensors or dicts with "
            "'image'")


@dataclass
class Images:
    """X, described: how many images, their native size and channels, and a reader of image ``i`` as a
    (C, H, W) float tensor in [0, 1] at that size (channels already converted when ``to`` is given)."""

    n: int
    height: int
    width: int
    channels: int
    read: Callable[[int, int], torch.Tensor]   # (index, channels) -> (channels, H, W)
    names: list[str]
    what: str                                  # for messages and the artifact: "numpy array (10, 16, 16)"
    convertible: bool                          # files convert grey <-> RGB; arrays must match the model

    def dataset(self, channels: int, size: int) -> Dataset:
        """The images as reconad items at the model's ``channels`` and ``size``."""
        if channels != self.channels and not self.convertible:
            raise DataError(f"X has {self.channels} channel(s) but the detector was fitted on {channels}-channel "
                            f"images; pass {channels}-channel images ({self.what})")
        return _Items(self, channels, size)


class _Items(Dataset):
    def __init__(self, images: Images, channels: int, size: int) -> None:
        self.images, self.channels, self.size = images, channels, size

    def __len__(self) -> int:
        return self.images.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        im = self.images
        x = im.read(i, self.channels)
        if x.dim() != 3 or x.shape[0] != self.channels or tuple(x.shape[1:]) != (im.height, im.width):
            raise DataError(f"X: image {im.names[i]} is {tuple(x.shape)}, expected ({self.channels}, {im.height}, "
                            f"{im.width}) like the first image: every image of X must have one size and channels")
        x = resize_images(x.unsqueeze(0).float(), self.size)[0]
        return {"image": x, "label": 0, "mask": x.new_zeros((1, self.size, self.size)), "path": im.names[i],
                "defect": "good"}


def _from_array(x: np.ndarray) -> Images:
    arr, what = array_images(x)
    return _from_tensor(torch.from_numpy(arr), what, checked=True)


def _from_tensor(t: torch.Tensor, what: str | None = None, checked: bool = False) -> Images:
    what = what or f"torch tensor {tuple(t.shape)} {t.dtype}"
    if t.dim() != 4 or t.shape[1] not in (1, 3):
        raise DataError(f"X: a torch tensor must be images (N, C, H, W) with C = 1 or 3, got {what}")
    if t.shape[0] == 0:
        raise DataError(f"X is empty ({what}): expected at least one image")
    if not checked:
        if not t.is_floating_point():
            raise DataError(f"X: a torch tensor must hold floats in [0, 1], got {what}")
        check_values(t.detach().float().cpu().numpy(), f"X ({what})")
    t = t.detach().float().cpu()
    n, c, h, w = t.shape
    return Images(n, h, w, c, lambda i, ch: t[i] if ch == c else to_channels(t[i:i + 1], ch)[0],
                  [f"X[{i}]" for i in range(n)], what, convertible=False)


def _from_paths(paths: list[str], what: str) -> Images:
    from PIL import Image

    from .data.folder import read_image

    sizes: dict[tuple[int, int], str] = {}
    modes: set[str] = set()
    for p in paths:
        if not os.path.isfile(p):
            raise DataError(f"X: {p!r} is not a file (expected image paths)")
        try:
            with Image.open(p) as im:
                size, mode = im.size, im.mode
        except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
            raise DataError(f"X: cannot read image {p}: {exc}") from exc
        sizes.setdefault(size, p)
        modes.add(mode)
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise DataError(f"X: images of mixed sizes: {p1} is {s1[0]}x{s1[1]} but {p2} is {s2[0]}x{s2[1]}; "
                            "every image of X must have one size (resize them first, or score them separately)")
    (w, h), = sizes
    channels = 1 if modes <= GREY_MODES else 3
    return Images(len(paths), h, w, channels, lambda i, ch: read_image(paths[i], ch), list(paths), what,
                  convertible=True)


def _from_dataset(ds: Dataset) -> Images:
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(f"X: a torch Dataset must have a length (got {type(ds).__name__}); "
                        "an IterableDataset is not supported") from None
    what = f"{type(ds).__name__} of {n} items"
    if n == 0:
        raise DataError(f"X is empty ({what}): expected at least one image")

    def image(i: int) -> torch.Tensor:
        item = ds[i]
        x = item.get("image") if isinstance(item, dict) else item
        if x is None:
            raise DataError(f"X: item {i} of the {type(ds).__name__} is a dict without an 'image' key "
                            f"(keys {sorted(item)})")
        x = torch.as_tensor(x)
        if x.dim() != 3 or x.shape[0] not in (1, 3) or not x.is_floating_point():
            raise DataError(f"X: item {i} of the {type(ds).__name__} must be a float (C, H, W) image with "
                            f"C = 1 or 3 in [0, 1] (a tensor, or a dict with 'image'), got "
                            f"{tuple(x.shape)} {x.dtype}")
        return x.float()

    first = image(0)
    c, h, w = first.shape

    def read(i: int, ch: int) -> torch.Tensor:
        x = image(i)
        return x if x.shape[0] == ch else to_channels(x.unsqueeze(0), ch)[0]

    return Images(n, h, w, c, read, [f"X[{i}]" for i in range(n)], what, convertible=False)


def is_mvtec_folder(x: object) -> bool:
    """A folder in the MVTec AD layout (``train/good`` inside): fitted through the ``folder`` dataset."""
    return isinstance(x, (str, os.PathLike)) and (Path(x) / "train" / "good").is_dir()


def as_images(x: object) -> Images:
    """X -> ``Images``; anything else is a ``DataError`` naming what is accepted."""
    if x is None:
        raise DataError(f"X is None: expected {EXPECTED}")
    if isinstance(x, (str, os.PathLike)):
        if not os.path.exists(x):
            raise DataError(f"X: {os.fspath(x)!r} does not exist (expected a folder of images or an image file)")
        paths = [path for path, _ in image_names([os.fspath(x)])]
        return _from_paths(paths, f"{len(paths)} image(s) in {os.fspath(x)}")
    if isinstance(x, np.ndarray):
        return _from_array(x)
    if isinstance(x, torch.Tensor):
        return _from_tensor(x)
    if isinstance(x, Dataset):
        return _from_dataset(x)
    if isinstance(x, (list, tuple)):
        if not x:
            raise DataError(f"X is an empty {type(x).__name__}: expected at least one image")
        if all(isinstance(p, (str, os.PathLike)) for p in x):
            return _from_paths([os.fspath(p) for p in x], f"{len(x)} image path(s)")
        if all(isinstance(a, np.ndarray) for a in x):
            shapes = {a.shape for a in x}
            if len(shapes) > 1:
                raise DataError(f"X: a list of arrays of mixed shapes {sorted(shapes)[:3]}: every image of X must "
                                "have one size (resize them first, or score them separately)")
            return _from_array(np.stack(x))
        kinds = sorted({type(v).__name__ for v in x})
        raise DataError(f"X: a list of {', '.join(kinds)}: expected image paths or numpy arrays of one shape")
    raise DataError(f"X: got a {type(x).__name__}; expected {EXPECTED}")


def split_normals(images: Images, channels: int, size: int, fraction: float, seed: int,
                  calibration: Images | None = None) -> DatasetSplits:
    """Training and held-out images of X (all normal): a seeded ``fraction`` is held out (the threshold is
    fitted on it), as the built-in datasets do; or all of X trains and ``calibration`` is held out."""
    items = images.dataset(channels, size)
    if calibration is not None:
        train, holdout = items, calibration.dataset(channels, size)
    else:
        n_hold = holdout_count(images.n, fraction, f"X ({images.what})")
        held = set(np.random.default_rng(seed).permutation(images.n)[:n_hold].tolist())
        train = Subset(items, [i for i in range(images.n) if i not in held])
        holdout = Subset(items, sorted(held))
    empty = TensorImageDataset(torch.zeros(0, channels, size, size), [], [], [])
    return DatasetSplits(train=train, holdout=holdout, test=empty, channels=channels, image_size=size,
                         has_masks=False, skipped=[])
