"""Cutting objects out of their images (§3.3) and the on-disk cache of the result.

An object becomes a square crop centred on its segmentation's bounding box (side = the box's longer side,
plus ``margin`` on each side), the background outside the segmentation set to 0, resized to
``size`` x ``size`` RGB. Where the square reaches past the image border it is padded with 0 (background),
so objects touching the border stay centred.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from reconad.data.base import DataError, resize_images
from reconad.io import atomic_path, write_json

from ._coco_index import CocoIndex, ObjectEntry, pycocotools_mask

__all__ = ["CACHE_VERSION", "cache_key", "cache_root", "crop_object", "extract_objects", "load_cache",
           "save_cache"]

CACHE_VERSION = 1     # bump when the extraction changes what it produces
SKIP_HINT = "fix or remove it, or pass --skip-bad (data.skip_bad: true) to skip the objects of unreadable images"


def crop_object(image: torch.Tensor, mask: np.ndarray, bbox: Sequence[float], size: int,
                margin: float = 0.0) -> torch.Tensor:
    """(3, H, W) float image and (H, W) 0/1 mask -> (3, size, size): centred, masked, resized."""
    x, y, bw, bh = (float(v) for v in bbox)
    side = max(1, math.ceil(max(bw, bh) * (1.0 + 2.0 * margin)))
    x0 = math.floor(x + bw / 2 - side / 2 + 0.5)     # half pixels round the same way on both axes
    y0 = math.floor(y + bh / 2 - side / 2 + 0.5)
    h, w = image.shape[-2:]
    canvas = image.new_zeros((image.shape[0], side, side))
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        m = torch.from_numpy(np.ascontiguousarray(mask[sy0:sy1, sx0:sx1])).to(image.dtype)
        canvas[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[:, sy0:sy1, sx0:sx1] * m
    return resize_images(canvas.unsqueeze(0), size)[0]


def _read_rgb(path: str) -> torch.Tensor:
    from reconad.data.folder import read_image   # grey, RGBA, palette and 16-bit images handled there

    return read_image(path, 3)


def extract_objects(index: CocoIndex, objects: list[ObjectEntry], images_dir: str, size: int, margin: float,
                    skip_bad: bool) -> tuple[np.ndarray, list[bool], list[str]]:
    """(pixels (N, size, size, 3) uint8, ok per object, skipped "file: reason"): every image decoded once."""
    from tqdm.auto import tqdm

    mask_utils = pycocotools_mask()
    pixels = np.zeros((len(objects), size, size, 3), dtype=np.uint8)
    ok = [False] * len(objects)
    skipped: list[str] = []
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, obj in enumerate(objects):
        by_image[obj.image_id].append(i)
    for image_id in tqdm(sorted(by_image), desc="coco: extracting objects", unit="image", disable=None,
                         mininterval=5.0):
        entry = index.images[image_id]
        path = os.path.join(images_dir, entry.file_name)
        try:
            image = _read_rgb(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure means the same to the user
            reason = f"{type(e).__name__}: {e}".replace("\n", " ")
            if not skip_bad:
                raise DataError(f"cannot read image {path} (image id {image_id}): {reason}; {SKIP_HINT}") from e
            skipped.append(f"{path}: {reason}")
            continue
        if tuple(image.shape[-2:]) != (entry.height, entry.width):
            reason = (f"the file is {image.shape[-1]}x{image.shape[-2]} but {index.path} says "
                      f"{entry.width}x{entry.height} (width x height)")
            if not skip_bad:
                raise DataError(f"image {path} (image id {image_id}): {reason}; {SKIP_HINT}")
            skipped.append(f"{path}: {reason}")
            continue
        with warnings.catch_warnings():   # pycocotools' Cython code trips a numpy 2 deprecation warning
            warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
            masks = mask_utils.decode([objects[i].rle for i in by_image[image_id]])     # (H, W, n)
        for j, i in enumerate(by_image[image_id]):
            obj = objects[i]
            crop = crop_object(image, masks[:, :, j], obj.bbox, size, margin)
            pixels[i] = (crop.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
            ok[i] = True
    return pixels, ok, skipped


# ------------------------------------------------------------------------------------------------ cache

def cache_root(option: str | None) -> Path:
    """``data.cache_dir``, else ``$RECONAD_CACHE/coco``, else ``~/.cache/reconad/coco``."""
    if option:
        return Path(option).expanduser()
    base = os.environ.get("RECONAD_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "reconad") / "coco"


def cache_key(index: CocoIndex, objects: list[ObjectEntry], images_dir: str, settings: dict[str, Any]) -> str:
    """sha256 of the annotation file's hash, the extraction settings, the objects and their image files
    (name, size, mtime: a replaced image invalidates the entry)."""
    files = {}
    for image_id in sorted({o.image_id for o in objects}):
        name = index.images[image_id].file_name
        try:
            st = os.stat(os.path.join(images_dir, name))
            files[name] = [st.st_size, st.st_mtime_ns]
        except OSError:
            files[name] = None
    payload = {"version": CACHE_VERSION, "annotations": index.sha256, "images": os.path.abspath(images_dir),
               "settings": settings, "objects": [o.id for o in objects], "files": files}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_cache(root: Path, key: str, n: int, size: int) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The cached (pixels, meta) for ``key``, memory-mapped; None when absent or unusable."""
    meta_path, pix_path = root / f"{key}.json", root / f"{key}.npy"
    if not (meta_path.is_file() and pix_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        pixels = np.load(pix_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        warnings.warn(f"coco cache {pix_path} is unreadable ({e}); extracting the objects again", stacklevel=3)
        return None
    if pixels.shape != (n, size, size, 3) or pixels.dtype != np.uint8 or len(meta.get("ok", [])) != n:
        return None
    return pixels, meta


def save_cache(root: Path, key: str, pixels: np.ndarray, meta: dict[str, Any]) -> None:
    """Write the pixels, then the meta file that marks the entry complete (both atomically); a cache that
    cannot be written is a warning, not an error."""
    try:
        with atomic_path(str(root / f"{key}.npy")) as tmp:
            np.save(tmp, pixels, allow_pickle=False)
        write_json(str(root / f"{key}.json"), meta)
    except OSError as e:
        warnings.warn(f"coco: cannot write the object cache in {root} ({e}); set data.cache_dir or "
                      f"RECONAD_CACHE to a writable folder to avoid decoding the images on every run", stacklevel=3)
