"""``coco``: the objects of a COCO annotation file as masked, centred crops (ODDObjects §3.3, §4.3).

Every selected object is cut out of its image: a square centred on its segmentation, the background
outside the segmentation removed (0), resized to ``data.image_size`` (the paper: 256x256x3). Polygon and
RLE segmentations are decoded with pycocotools (``pip install 'reconad[coco]'``). Crowd annotations are
skipped unless ``include_crowd``; objects smaller than ``min_area`` pixels are skipped; degenerate
segmentations (polygons of fewer than 3 points, zero area, outside the image) are skipped and annotations
without ``area`` repaired, each kind counted in one warning. The crops are cached on disk, keyed by the
annotation file's sha256 and the settings, so a second run does not decode any image.

Protocols (``protocol``):

- ``single`` / ``multi`` (``auto`` picks by the number of ``normal_categories``): the file's images are
  split with ``seed``, ``train_fraction`` (0.85, the paper's 85/15) for training. Normal objects of the
  training images train (a ``holdout_fraction`` of them held out for the threshold); every selected object
  of the other images is tested: normal categories as normal, the others (``categories``, default all) as
  anomalies whose ``defect`` is their category name.
- ``rank`` (§4.4, the data-cleaning report): every selected object is trained on and scored; the held-out
  objects (for the threshold) are a seeded subset of the same objects.

Ids are ``coco/<image_id>/<annotation_id>``; ``dataset.objects[i]`` gives an item's image, annotation,
category, file name, box and area.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from reconad.data.base import NORMAL, DataError, DatasetSplits, DataSettings, check_settings, holdout_count, \
    image_size, to_channels

from ._coco_extract import CACHE_VERSION, cache_key, cache_root, extract_objects, load_cache, save_cache
from ._coco_index import CocoIndex, ObjectEntry, read_index
from .augment import ObjectAugment

__all__ = ["CocoObjects", "ObjectInfo", "coco_dataset"]

Categories = str | list[str | int] | None


@dataclass(frozen=True)
class ObjectInfo:
    """Where an object comes from (what the rank report lists)."""

    image_id: int
    annotation_id: int
    category: str
    file_name: str
    bbox: tuple[float, float, float, float]
    area: float

    @property
    def path(self) -> str:
        return f"coco/{self.image_id}/{self.annotation_id}"


class CocoObjects(Dataset):
    """Extracted objects (uint8, possibly memory-mapped from the cache), converted to float on access;
    ``augment`` (training only) is applied per item with torch's global RNG."""

    def __init__(self, pixels: np.ndarray, rows: list[int], objects: list[ObjectInfo], labels: list[int],
                 defects: list[str], channels: int, augment: ObjectAugment | None = None,
                 notes: list[str] | None = None) -> None:
        if not len(rows) == len(objects) == len(labels) == len(defects):
            raise ValueError(f"CocoObjects: {len(rows)} rows, {len(objects)} objects, {len(labels)} labels and "
                             f"{len(defects)} defects; expected one of each per item")
        self.pixels, self.rows, self.objects = pixels, list(rows), list(objects)
        self.labels, self.defects = list(labels), list(defects)
        self.channels, self.augment = channels, augment
        self.notes = list(notes or [])    # the data warnings, for reports

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        arr = np.asarray(self.pixels[self.rows[i]])                           # (S, S, 3) uint8
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        if self.channels != 3:
            image = to_channels(image.unsqueeze(0), self.channels)[0]
        if self.augment is not None:
            image = self.augment(image)
        return {"image": image.contiguous(), "label": self.labels[i],
                "mask": image.new_zeros((1, *image.shape[-2:])), "path": self.objects[i].path,
                "defect": self.defects[i]}


def _as_list(value: Categories, key: str) -> list[str | int] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v != ""]
    if not items:
        raise DataError(f"data.{key}: expected category names or ids (a list, or a comma-separated string), "
                        f"got {value!r}")
    return items


def _check_options(settings: DataSettings, train_fraction: float, min_area: float, margin: float,
                   max_anomalies: int | None) -> None:
    check_settings(settings)
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"data.train_fraction: expected a number in (0, 1) (the paper's 85/15 split is 0.85), "
                        f"got {train_fraction!r}")
    if min_area < 0:
        raise DataError(f"data.min_area: expected >= 0 pixels, got {min_area!r}")
    if not 0.0 <= margin <= 1.0:
        raise DataError(f"data.margin: expected a fraction of the object's size in [0, 1], got {margin!r}")
    if max_anomalies is not None and max_anomalies < 1:
        raise DataError(f"data.max_anomalies: expected a positive int or null (all), got {max_anomalies!r}")


def _resolve_protocol(protocol: str, normal: list[int] | None) -> str:
    if protocol == "rank":
        return protocol
    if not normal:
        raise DataError("data.normal_categories: the single- and multi-class protocols need the normal "
                        "categories, e.g. [orange] or [orange, banana, apple, broccoli, carrot]; "
                        "or set data.protocol: rank to train on and rank every object")
    n = len(set(normal))
    if protocol == "auto":
        return "single" if n == 1 else "multi"
    if protocol == "single" and n != 1:
        raise DataError(f"data.protocol: single needs exactly one normal category, got {n}; use multi (or auto)")
    if protocol == "multi" and n < 2:
        raise DataError("data.protocol: multi needs at least two normal categories; use single (or auto)")
    return protocol


def _split(index: CocoIndex, candidates: list[ObjectEntry], normal: set[int], protocol: str,
           train_fraction: float, max_anomalies: int | None, rng: np.random.Generator
           ) -> tuple[list[ObjectEntry], list[ObjectEntry]]:
    """(training objects, test objects): everything twice for rank, else split by image."""
    if protocol == "rank":
        return candidates, candidates
    image_ids = np.array(sorted(index.images), dtype=np.int64)
    if len(image_ids) < 2:
        raise DataError(f"data.annotations: {index.path} has {len(image_ids)} usable image(s); the "
                        f"train/test split needs at least 2")
    n_train = min(len(image_ids) - 1, max(1, round(train_fraction * len(image_ids))))
    train_images = set(rng.permutation(image_ids)[:n_train].tolist())
    train = [o for o in candidates if o.category_id in normal and o.image_id in train_images]
    test = [o for o in candidates if o.image_id not in train_images]
    anomalies = [o for o in test if o.category_id not in normal]
    if max_anomalies is not None and len(anomalies) > max_anomalies:
        keep = {anomalies[i].id for i in rng.choice(len(anomalies), max_anomalies, replace=False).tolist()}
        test = [o for o in test if o.category_id in normal or o.id in keep]
    return train, test


def _pixels(index: CocoIndex, objects: list[ObjectEntry], images_dir: str, settings: DataSettings,
            margin: float, cache: bool, cache_dir: str | None) -> tuple[np.ndarray, dict[int, int], list[str]]:
    """(pixels (N, S, S, 3) uint8, annotation id -> row for the objects extracted, skipped "file: reason"):
    from the cache, else decoded (missing images are found first: an error, or skipped with skip_bad)."""
    missing = [os.path.join(images_dir, index.images[i].file_name) for i in sorted({o.image_id for o in objects})
               if not os.path.isfile(os.path.join(images_dir, index.images[i].file_name))]
    if missing and not settings.skip_bad:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"coco {index.path}: {len(missing)} referenced image(s) missing: {shown}; put them in "
                        f"{images_dir}, or pass --skip-bad (data.skip_bad: true) to skip their objects")
    skipped = [f"{p}: missing" for p in missing]
    gone = set(missing)
    objects = [o for o in objects if os.path.join(images_dir, index.images[o.image_id].file_name) not in gone]

    size = image_size(settings, None)     # crops of objects of every size: no own size
    key = cache_key(index, objects, images_dir, {"image_size": size, "margin": margin,
                                                  "skip_bad": settings.skip_bad})
    root = cache_root(cache_dir)
    cached = load_cache(root, key, len(objects), size) if cache else None
    if cached is not None:
        pixels, meta = cached
        ok, bad = list(meta["ok"]), list(meta.get("skipped", []))
    else:
        pixels, ok, bad = extract_objects(index, objects, images_dir, size, margin, settings.skip_bad)
        if cache:
            save_cache(root, key, pixels, {"version": CACHE_VERSION, "annotations": os.path.abspath(index.path),
                                           "objects": [o.id for o in objects], "ok": ok, "skipped": bad})
    return pixels, {o.id: r for r, o in enumerate(objects) if ok[r]}, skipped + bad


def coco_dataset(settings: DataSettings, annotations: str | None = None, images: str | None = None,
                 normal_categories: Categories = None, categories: Categories = None,
                 protocol: Literal["auto", "single", "multi", "rank"] = "auto", train_fraction: float = 0.85,
                 max_anomalies: int | None = None, min_area: float = 64.0, include_crowd: bool = False,
                 margin: float = 0.0, augment: bool = True, cache_dir: str | None = None,
                 cache: bool = True) -> DatasetSplits:
    """Masked, centred COCO objects: one-class (single/multi category) or rank-everything (ODDObjects).

    Args:
        annotations: the COCO annotation JSON file.
        images: the folder holding the images the file names (default: ``data.root``).
        normal_categories: normal category names or ids (a list or a comma-separated string).
        categories: the categories objects are taken from at all (default: every category); in the
            single/multi protocols the ones not normal are the anomalies.
        protocol: ``single`` (one normal category), ``multi`` (several), ``auto`` (by their number) or
            ``rank`` (train on and score every selected object, §4.4).
        train_fraction: share of the images whose normal objects train (the rest are tested).
        max_anomalies: a seeded sample of at most this many test anomalies (null: all).
        min_area: objects whose segmentation covers fewer pixels (in the original image) are skipped.
        include_crowd: keep ``iscrowd`` annotations (skipped by default: they outline groups of objects).
        margin: context around the object's box, as a fraction of its longer side, on each side.
        augment: §3.3's augmentations on the training objects (never on held-out or test objects).
        cache_dir: where extracted objects are cached (default ``$RECONAD_CACHE/coco`` or
            ``~/.cache/reconad/coco``).
        cache: read and write the cache (false: always decode).
    """
    _check_options(settings, train_fraction, min_area, margin, max_anomalies)
    images_dir = images or settings.root
    if not images_dir:
        raise DataError("data.images: the coco dataset needs the folder holding the annotation file's images "
                        "(or data.root)")
    if not os.path.isdir(images_dir):
        raise DataError(f"data.images: folder {images_dir} does not exist; expected the folder of the COCO "
                        f"images (e.g. val2017/)")
    index = read_index(annotations or "", images_dir)
    normal_ids = [index.category_id(c, "data.normal_categories")
                  for c in _as_list(normal_categories, "normal_categories") or []]
    protocol = _resolve_protocol(protocol, normal_ids)
    chosen = _as_list(categories, "categories")
    cat_ids = {index.category_id(c, "data.categories") for c in chosen} if chosen else set(index.categories)
    normal = set(normal_ids)
    if protocol == "rank":
        wanted = normal | (cat_ids if chosen else set()) if (normal or chosen) else set(index.categories)
    else:
        wanted = cat_ids | normal

    notes = index.issues.messages(f"coco {index.path}")
    candidates = [o for o in index.objects if o.category_id in wanted]
    crowd = [o.id for o in candidates if o.iscrowd and not include_crowd]
    small = [o.id for o in candidates if o.area < min_area and not (o.iscrowd and not include_crowd)]
    candidates = [o for o in candidates if (include_crowd or not o.iscrowd) and o.area >= min_area]
    if small:
        notes.append(f"coco {index.path}: left out {len(small)} object(s) smaller than data.min_area="
                     f"{min_area:g} pixels")
    if crowd:
        notes.append(f"coco {index.path}: left out {len(crowd)} crowd annotation(s) (data.include_crowd: false)")
    for note in notes:
        warnings.warn(note, stacklevel=2)

    rng = np.random.default_rng(settings.seed)
    train_objs, test_objs = _split(index, candidates, normal, protocol, train_fraction, max_anomalies, rng)
    names = ", ".join(index.categories[c] for c in sorted(normal)) or "every selected category"
    if len(train_objs) < 2:
        raise DataError(f"coco {index.path}: {len(train_objs)} usable training object(s) of {names}, need at "
                        f"least 2; check data.normal_categories, data.min_area (now {min_area:g}) and "
                        f"data.train_fraction (now {train_fraction:g})")
    if not test_objs:
        raise DataError(f"coco {index.path}: no selected objects in the test images; lower "
                        f"data.train_fraction (now {train_fraction:g}) or change data.seed")

    # extract the union once (a rank run's train and test are the same objects)
    union = sorted({o.id: o for o in [*train_objs, *test_objs]}.values(), key=lambda o: o.id)
    pixels, row_of, skipped = _pixels(index, union, images_dir, settings, margin, cache, cache_dir)

    channels = settings.channels or 3

    def info(o: ObjectEntry) -> ObjectInfo:
        img = index.images[o.image_id]
        return ObjectInfo(o.image_id, o.id, index.categories[o.category_id], img.file_name, o.bbox, o.area)

    def split(objs: list[ObjectEntry], aug: bool) -> CocoObjects:
        objs = [o for o in objs if o.id in row_of]
        anomalous = [int(protocol != "rank" and o.category_id not in normal) for o in objs]
        return CocoObjects(pixels, [row_of[o.id] for o in objs], [info(o) for o in objs], anomalous,
                           [index.categories[o.category_id] if a else NORMAL for o, a in zip(objs, anomalous)],
                           channels, ObjectAugment() if aug and augment else None, notes)

    train_objs = [o for o in train_objs if o.id in row_of]
    n_hold = holdout_count(len(train_objs), settings.holdout_fraction, f"coco {names}")
    held = set(rng.permutation(len(train_objs))[:n_hold].tolist())
    holdout = [o for i, o in enumerate(train_objs) if i in held]
    if protocol != "rank":     # in rank mode every object is trained on (§4.4); the held-out ones too
        train_objs = [o for i, o in enumerate(train_objs) if i not in held]
    test = split(test_objs, False)
    if len(test) == 0:
        raise DataError(f"coco {index.path}: every test object was skipped (unreadable images: "
                        f"{'; '.join(skipped[:3])})")
    return DatasetSplits(train=split(train_objs, True), holdout=split(holdout, False), test=test,
                         channels=channels, image_size=image_size(settings, None), has_masks=False, skipped=skipped)
