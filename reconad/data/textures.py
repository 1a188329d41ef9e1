"""``textures``: scikit-image's brick / grass / gravel photos (512x512 grey) cut into patches, with synthetic
defects carrying exact pixel masks.

The photo is cut into three horizontal bands that share no pixel: train (top), holdout (middle) and test
(bottom quarter). Patches of ``patch_size`` are taken every ``patch_stride`` pixels inside each band,
resized to ``data.image_size`` and rounded to 8-bit levels. A seeded ``anomaly_fraction`` of the test
patches gets one defect each (scratch, stain, or a piece pasted from another texture, balanced); the
mask is exactly the pixels the defect changed. With the defaults (64-pixel patches, stride 16) each photo
gives 435 train, 87 holdout and 145 test patches (72 with a defect).
"""
from __future__ import annotations

import difflib

import numpy as np
import torch

from ._defects import DEFECTS, apply_defect, quantize
from .base import DEFAULT_IMAGE_SIZE, NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings, \
    image_size, resize_images, to_channels

__all__ = ["TEXTURES", "load_texture", "textures"]

TEXTURES = ("brick", "grass", "gravel")


def load_texture(name: str) -> np.ndarray:
    """A scikit-image texture photo as float32 (H, W) in [0, 1] (shipped with scikit-image; nothing downloads)."""
    import skimage.data
    from skimage.color import rgb2gray

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 3:                      # in case a scikit-image version ships it in colour
        return rgb2gray(img[..., :3]).astype(np.float32)
    return img.astype(np.float32) / 255.0


def _bands(height: int, patch: int, stride: int, holdout_fraction: float) -> dict[str, tuple[int, int]]:
    """Row ranges [top, bottom) of the train / holdout / test bands."""
    test = max(patch, height // 4)
    normal = height - test
    hold = max(patch + 2 * stride, round(holdout_fraction * normal))
    if normal - hold < patch:
        raise DataError(f"data.patch_size={patch} with patch_stride={stride} leaves no room for training "
                        f"patches in a {height}-row photo; use a smaller patch_size or patch_stride")
    return {"train": (0, normal - hold), "holdout": (normal - hold, normal), "test": (normal, height)}


def _cut(photo: np.ndarray, rows: tuple[int, int], patch: int, stride: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(rows[0], rows[1] - patch + 1, stride)
            for x in range(0, photo.shape[1] - patch + 1, stride)]


def _patches(photo: np.ndarray, where: list[tuple[int, int]], patch: int, size: int) -> np.ndarray:
    """(N, size, size) patches at ``where``, resized and rounded to 8-bit levels."""
    cut = np.stack([photo[y:y + patch, x:x + patch] for y, x in where])
    return quantize(resize_images(torch.from_numpy(cut).unsqueeze(1), size).squeeze(1).numpy())


def textures(settings: DataSettings, patch_size: int | None = None, patch_stride: int | None = None,
             anomaly_fraction: float = 0.5, defects: str = "scratch,stain,paste") -> DatasetSplits:
    """Patches of a scikit-image texture photo (``data.category``) with synthetic defects in the test split.

    Args:
        patch_size: side of the patches cut from the 512x512 photo, in photo pixels; null = image_size (both
            null: 64).
        patch_stride: step between patches, in photo pixels; null = patch_size // 4.
        anomaly_fraction: fraction of the test patches that get a synthetic defect.
        defects: comma-separated defect kinds to draw from: scratch, stain, paste.
    """
    check_settings(settings)
    category = settings.category
    if category not in TEXTURES:
        hint = difflib.get_close_matches(str(category), TEXTURES, n=1)
        raise DataError(f"data.category: textures needs one of {', '.join(TEXTURES)}, got {category!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else ""))
    patch = patch_size if patch_size is not None else settings.image_size or DEFAULT_IMAGE_SIZE
    size = image_size(settings, patch)
    stride = max(1, patch // 4) if patch_stride is None else patch_stride
    for key, value in (("patch_size", patch), ("patch_stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"data.{key}: expected a positive int, got {value!r}")
    if isinstance(anomaly_fraction, bool) or not isinstance(anomaly_fraction, (int, float)) \
            or not 0.0 <= anomaly_fraction <= 1.0:
        raise DataError(f"data.anomaly_fraction: expected a number in [0, 1], got {anomaly_fraction!r}")
    kinds = [k.strip() for k in str(defects).split(",") if k.strip()]
    unknown = [k for k in kinds if k not in DEFECTS]
    if not kinds or unknown:
        raise DataError(f"data.defects: expected a comma-separated list of {', '.join(DEFECTS)}, got {defects!r}")

    photo = load_texture(category)
    if patch > min(photo.shape):
        raise DataError(f"data.patch_size: {patch} is larger than the {photo.shape[0]}x{photo.shape[1]} photo")
    bands = _bands(photo.shape[0], patch, stride, settings.holdout_fraction)
    channels = settings.channels or 1
    rng = np.random.default_rng([settings.seed, TEXTURES.index(category)])

    def dataset(split: str, images: np.ndarray, where: list[tuple[int, int]], labels: list[int],
                kinds_: list[str], masks: np.ndarray | None = None) -> TensorImageDataset:
        return TensorImageDataset(
            to_channels(torch.from_numpy(images).unsqueeze(1), channels), labels,
            [f"textures/{category}/{split}/y{y:03d}_x{x:03d}" for y, x in where], kinds_,
            None if masks is None else torch.from_numpy(masks).unsqueeze(1))

    out = {}
    for split in ("train", "holdout"):
        where = _cut(photo, bands[split], patch, stride)
        out[split] = dataset(split, _patches(photo, where, patch, size), where, [0] * len(where),
                             [NORMAL] * len(where))

    where = _cut(photo, bands["test"], patch, stride)
    images = _patches(photo, where, patch, size)
    masks = np.zeros(images.shape, dtype=bool)
    labels, names = [0] * len(where), [NORMAL] * len(where)
    n_anomalous = round(anomaly_fraction * len(where))
    chosen = np.sort(rng.permutation(len(where))[:n_anomalous])
    kind_of = rng.permutation([kinds[i % len(kinds)] for i in range(n_anomalous)])   # balanced kinds
    donors = [load_texture(t) for t in TEXTURES if t != category]
    for i, kind in zip(chosen.tolist(), kind_of.tolist()):
        donor = donors[rng.integers(len(donors))]
        y, x = rng.integers(0, donor.shape[0] - patch + 1), rng.integers(0, donor.shape[1] - patch + 1)
        donor_patch = _patches(donor, [(y, x)], patch, size)[0]
        images[i], masks[i] = apply_defect(kind, images[i], rng, donor_patch)
        labels[i], names[i] = 1, kind
    out["test"] = dataset("test", images, where, labels, names, masks)

    return DatasetSplits(train=out["train"], holdout=out["holdout"], test=out["test"], channels=channels,
                         image_size=size, has_masks=True, skipped=[], own_size=patch)
