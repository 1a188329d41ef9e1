"""``folder``: your own images in the MVTec AD layout, read lazily with Pillow.

::

    ROOT[/CATEGORY]/train/good/*           normal training images
                    test/good/*            normal test images
                    test/<defect>/*        anomalous test images, one folder per defect kind
                    ground_truth/<defect>/<name>_mask.png   optional pixel masks (nonzero = anomalous)

Any format Pillow reads; grey or colour (alpha and palettes are converted). Every file's header is read
when the dataset is built, so a missing folder, an unreadable image or a mask of the wrong size fails
before training. A seeded ``data.holdout_fraction`` of ``train/good`` is held out for the threshold.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._imagefiles import GREY_MODES
from .._imagefiles import image_extensions, read_array
from .base import NORMAL, DataError, DatasetSplits, DataSettings, check_settings, holdout_count, \
    image_size, own_size, resize_images, resize_masks

__all__ = ["FolderDataset", "folder", "image_extensions", "read_image", "read_mask"]

LAYOUT = ("ROOT[/CATEGORY]/train/good/, test/good/, test/<defect>/ and optionally "
          "ground_truth/<defect>/<name>_mask.png (the MVTec AD layout)")
_SKIP_HINT = "fix or remove it, or pass --skip-bad (data.skip_bad: true) to skip unreadable images"


class Record(NamedTuple):
    path: str
    label: int
    defect: str
    mask: str | None


def _list_images(folder: Path, extensions: set[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)


def _probe(path: Path) -> tuple[tuple[int, int], str]:
    """(size, mode) from the header; raises if the file is not a readable image.

    PNG and most formats are checked with ``verify()`` (chunk checksums, no decoding); JPEG is decoded at
    1/8 scale (``draft``), which is cheap and catches truncated files.
    """
    with Image.open(path) as im:
        size, mode, fmt = im.size, im.mode, im.format
        if fmt == "JPEG":
            im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
        else:
            im.verify()
    return size, mode


def read_image(path: str | Path, channels: int) -> torch.Tensor:
    """(channels, H, W) float32 in [0, 1] at the file's own size (``reconad._imagefiles.read_array``)."""
    return torch.from_numpy(read_array(path, channels))


def read_mask(path: str | Path) -> torch.Tensor:
    """(1, H, W) uint8 0/1: nonzero pixels (in any channel) are anomalous."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return torch.from_numpy((arr > 0).astype(np.uint8)).unsqueeze(0)


class FolderDataset(Dataset):
    """Images listed at construction, read and resized on access."""

    def __init__(self, records: list[Record], channels: int, image_size: int) -> None:
        self.records = records
        self.channels = channels
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        try:
            image = read_image(r.path, self.channels)
        except Exception as e:  # noqa: BLE001 - any decoder failure means the same thing to the user
            raise DataError(f"cannot read image {r.path}: {e}; {_SKIP_HINT}") from e
        image = resize_images(image.unsqueeze(0), self.image_size)[0]
        if r.mask is None:
            mask = image.new_zeros((1, self.image_size, self.image_size))
        else:
            try:
                mask = resize_masks(read_mask(r.mask).unsqueeze(0), self.image_size)[0].float()
            except Exception as e:  # noqa: BLE001
                raise DataError(f"cannot read mask {r.mask} (of {r.path}): {e}; {_SKIP_HINT}") from e
        return {"image": image, "label": r.label, "mask": mask, "path": r.path, "defect": r.defect}


def _find_mask(gt: Path, defect: str, image: Path, extensions: set[str]) -> Path | None:
    for stem in (f"{image.stem}_mask", image.stem):
        for ext in [".png", *sorted(extensions - {".png"})]:
            p = gt / defect / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def _root(settings: DataSettings) -> Path:
    if not settings.root:
        raise DataError(f"data.root: the folder dataset needs the path of your images, laid out as {LAYOUT}")
    root = Path(settings.root).expanduser()
    if settings.category:
        root = root / settings.category
    if not root.is_dir():
        raise DataError(f"data.root: folder {root} does not exist; expected {LAYOUT}")
    return root


def folder(settings: DataSettings) -> DatasetSplits:
    """Images in the MVTec AD layout under ``data.root`` (``data.category`` picks a sub-folder)."""
    check_settings(settings)
    root = _root(settings)
    exts = image_extensions()

    train_dir, test_dir, gt_dir = root / "train" / "good", root / "test", root / "ground_truth"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise DataError(f"data.root: {d} is missing; expected {LAYOUT}")
    train_files = _list_images(train_dir, exts)
    if not train_files:
        raise DataError(f"data.root: {train_dir} holds no images; expected {LAYOUT}")
    defect_dirs = sorted(d for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    test_files = [(f, d.name) for d in defect_dirs for f in _list_images(d, exts)]
    if not test_files:
        raise DataError(f"data.root: {test_dir} holds no images in good/ or <defect>/ sub-folders; "
                        f"expected {LAYOUT}")
    has_masks = gt_dir.is_dir() and any(_list_images(d, exts) for d in gt_dir.iterdir() if d.is_dir())

    skipped: list[str] = []
    modes: set[str] = set()

    def probe(path: Path, what: str, of: Path | None = None) -> tuple[int, int] | None:
        """The image size, or None when unreadable and skip_bad (recorded in ``skipped``)."""
        try:
            size, mode = _probe(path)
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {e}".replace("\n", " ")
            note = "" if of is None else f" (mask of {of})"
            if settings.skip_bad:
                skipped.append(f"{path}: {reason}{note}")
                return None
            raise DataError(f"cannot read {what} {path}{note}: {reason}; {_SKIP_HINT}") from e
        if of is None:
            modes.add(mode)
        return size

    train_sizes = {f: probe(f, "image") for f in train_files}
    train = [Record(str(f), 0, NORMAL, None) for f, size in train_sizes.items() if size is not None]
    own = own_size(size for size in train_sizes.values() if size is not None)
    side = image_size(settings, own)
    test: list[Record] = []
    for f, defect in test_files:
        size = probe(f, "image")
        if size is None:
            continue
        if defect == NORMAL or not has_masks:
            test.append(Record(str(f), int(defect != NORMAL), defect, None))
            continue
        mask = _find_mask(gt_dir, defect, f, exts)
        if mask is None:
            raise DataError(f"no mask for {f}: expected {gt_dir / defect / (f.stem + '_mask.png')} "
                            f"(or remove {gt_dir} to use image-level metrics only)")
        mask_size = probe(mask, "mask", of=f)
        if mask_size is None:
            continue
        if mask_size != size:
            raise DataError(f"mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {f} is "
                            f"{size[0]}x{size[1]}; a mask must have its image's size")
        test.append(Record(str(f), 1, defect, str(mask)))
    if not test:
        raise DataError(f"data.root: no readable test images left in {test_dir} after skipping unreadable files")

    rng = np.random.default_rng(settings.seed)
    n_hold = holdout_count(len(train), settings.holdout_fraction, f"folder {train_dir}")
    held = set(rng.permutation(len(train))[:n_hold].tolist())
    channels = settings.channels or (1 if modes <= GREY_MODES else 3)
    ds = lambda rs: FolderDataset(rs, channels, side)  # noqa: E731
    return DatasetSplits(train=ds([r for i, r in enumerate(train) if i not in held]),
                         holdout=ds([r for i, r in enumerate(train) if i in held]),
                         test=ds(test), channels=channels, image_size=side, own_size=own,
                         has_masks=has_masks, skipped=skipped)
