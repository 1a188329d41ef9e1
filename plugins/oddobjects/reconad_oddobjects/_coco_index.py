"""Reading a COCO annotation file: checked structure, every object's segmentation as one RLE, and the
messy parts of real files repaired or skipped with counts (never a crash).

Kept apart from ``coco.py`` so the rules for what counts as a usable object live in one place.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from reconad.data.base import DataError

__all__ = ["CocoIndex", "ImageEntry", "Issues", "ObjectEntry", "file_sha256", "pycocotools_mask", "read_index"]

_COCO_HINT = ("a COCO annotation file is a JSON object with lists 'images' (id, file_name, width, height), "
              "'annotations' (id, image_id, category_id, segmentation) and 'categories' (id, name)")


def pycocotools_mask() -> Any:
    """``pycocotools.mask``, imported when first needed (it is the optional ``[coco]`` extra)."""
    try:
        import pycocotools.mask as mask_utils
    except ImportError as e:
        raise DataError("the coco dataset needs pycocotools to decode COCO segmentations: "
                        "pip install 'reconad[coco]' (or pip install pycocotools)") from e
    return mask_utils


@dataclass(frozen=True)
class ImageEntry:
    id: int
    file_name: str
    width: int
    height: int


@dataclass
class ObjectEntry:
    """One annotation that survived the checks; ``rle`` is its whole segmentation as one compressed RLE."""

    id: int
    image_id: int
    category_id: int
    iscrowd: bool
    rle: dict
    area: float           # of the decoded segmentation, in pixels of the original image
    bbox: tuple[float, float, float, float]   # x, y, w, h of the segmentation (not the file's bbox field)


@dataclass
class Issues:
    """Annotations (or images) skipped or repaired: "what(s) why" -> their ids."""

    skipped: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    repaired: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def messages(self, where: str) -> list[str]:
        def ids(xs: list[Any]) -> str:
            shown = ", ".join(str(x) for x in xs[:8])
            return shown + (f", ... ({len(xs) - 8} more)" if len(xs) > 8 else "")

        out = [f"{where}: skipped {len(v)} {k}: ids {ids(v)}" for k, v in self.skipped.items() if v]
        out += [f"{where}: repaired {len(v)} {k}: ids {ids(v)}" for k, v in self.repaired.items() if v]
        return out


@dataclass
class CocoIndex:
    path: str
    sha256: str
    images: dict[int, ImageEntry]
    categories: dict[int, str]
    objects: list[ObjectEntry]
    issues: Issues

    def category_id(self, wanted: str | int, key: str) -> int:
        """A category id from a name (exact, then case-insensitive) or an id; ``key`` names the config key."""
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            if wanted in self.categories:
                return wanted
        else:
            by_name = {n: i for i, n in self.categories.items()}
            if str(wanted) in by_name:
                return by_name[str(wanted)]
            folded = {n.casefold(): i for n, i in by_name.items()}
            if str(wanted).casefold() in folded:
                return folded[str(wanted).casefold()]
        import difflib

        names = sorted(self.categories.values())
        close = difflib.get_close_matches(str(wanted), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise DataError(f"{key}: no category {wanted!r} in {self.path} (by name or id){hint} "
                        f"Categories: {shown}")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _load_json(path: str) -> tuple[dict, str]:
    if not path:
        raise DataError("data.annotations: the coco dataset needs the path of a COCO annotation file "
                        "(e.g. annotations/instances_val2017.json)")
    if not os.path.isfile(path):
        raise DataError(f"data.annotations: file {path} does not exist; expected a COCO annotation JSON file")
    digest = file_sha256(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as e:
        raise DataError(f"data.annotations: {path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                        f"{e.msg}); {_COCO_HINT}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"data.annotations: {path} is not UTF-8 text ({e}); {_COCO_HINT}") from None
    if not isinstance(raw, dict):
        raise DataError(f"data.annotations: {path} holds a JSON {type(raw).__name__}, not an object; {_COCO_HINT}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(raw.get(k), list)]
    if missing:
        raise DataError(f"data.annotations: {path} is not a COCO annotation file: "
                        f"{', '.join(repr(k) for k in missing)} missing or not a list; {_COCO_HINT}")
    return raw, digest


def _probe_size(images_dir: str, file_name: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(os.path.join(images_dir, file_name)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - a missing or unreadable image is reported when it is needed
        return None


def _segmentation_rle(ann: dict, img: ImageEntry, mask_utils: Any, issues: Issues) -> dict | None:
    """The annotation's segmentation as one compressed RLE, or None (recorded in ``issues``) when unusable."""
    aid, h, w = ann["id"], img.height, img.width
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(p, (int, float)) for p in seg):
        seg = [seg]    # a single flat polygon instead of a list of polygons
    if isinstance(seg, list) and seg:
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)]
        if not polys:
            issues.skipped["annotation(s) with degenerate polygons (fewer than 3 points, or not numbers)"].append(aid)
            return None
        if len(polys) < len(seg):
            issues.repaired["annotation(s) with some degenerate polygon parts (dropped)"].append(aid)
        rles = mask_utils.frPyObjects([[float(v) for v in p] for p in polys], h, w)
        return mask_utils.merge(rles)
    if isinstance(seg, dict) and "counts" in seg:
        size = seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and [_int(size[0]), _int(size[1])] == [h, w]):
            issues.skipped["annotation(s) with an RLE whose size is not the image's height and width"].append(aid)
            return None
        counts = seg["counts"]
        try:
            # run lengths must cover the image exactly; pycocotools would read past a short one
            if isinstance(counts, list) and all(_int(c) is not None and c >= 0 for c in counts) \
                    and sum(int(c) for c in counts) == h * w:
                return mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
            if isinstance(counts, str):
                rle = {"size": [h, w], "counts": counts.encode("ascii")}
                with warnings.catch_warnings():     # numpy 2 deprecation inside pycocotools' Cython code
                    warnings.simplefilter("ignore", DeprecationWarning)
                    mask_utils.decode(rle)          # the only full check of a compressed string
                return rle
        except Exception:  # noqa: BLE001 - a corrupt RLE is one more kind of degenerate segmentation
            pass
        issues.skipped["annotation(s) with a corrupt RLE segmentation"].append(aid)
        return None
    # no usable segmentation: the box is the best outline there is (detection-only annotations)
    box = ann.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box) \
            and box[2] > 0 and box[3] > 0:
        x, y, bw, bh = (float(v) for v in box)
        issues.repaired["annotation(s) without a segmentation, their bbox used as the outline"].append(aid)
        return mask_utils.merge(mask_utils.frPyObjects([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], h, w))
    issues.skipped["annotation(s) without a segmentation or bbox"].append(aid)
    return None


def read_index(path: str, images_dir: str) -> CocoIndex:
    """Parse and check ``path``; unusable annotations are skipped and counted in ``CocoIndex.issues``."""
    raw, digest = _load_json(path)
    mask_utils = pycocotools_mask()
    issues = Issues()

    categories: dict[int, str] = {}
    for c in raw["categories"]:
        cid = _int(c.get("id")) if isinstance(c, dict) else None
        if cid is None or not isinstance(c.get("name"), str):
            raise DataError(f"data.annotations: {path}: category {c!r} needs an integer 'id' and a 'name'")
        categories[cid] = c["name"]

    images: dict[int, ImageEntry] = {}
    for im in raw["images"]:
        iid = _int(im.get("id")) if isinstance(im, dict) else None
        if iid is None or not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise DataError(f"data.annotations: {path}: image entry {str(im)[:120]} needs an integer 'id' and "
                            f"a 'file_name'")
        w, h = _int(im.get("width")), _int(im.get("height"))
        if not (w and h and w > 0 and h > 0):
            size = _probe_size(images_dir, im["file_name"])
            if size is None:
                issues.skipped["image(s) without width/height whose file cannot be read"].append(iid)
                continue
            issues.repaired["image(s) without width/height (read from the file)"].append(iid)
            w, h = size
        images[iid] = ImageEntry(iid, im["file_name"], w, h)

    objects: list[ObjectEntry] = []
    seen: set[int] = set()
    for position, ann in enumerate(raw["annotations"]):
        aid = _int(ann.get("id")) if isinstance(ann, dict) else None
        if aid is None:
            issues.skipped["annotation(s) without an integer id (shown by position)"].append(f"#{position}")
            continue
        if aid in seen:
            issues.skipped["annotation(s) with a duplicate id (the first is kept)"].append(aid)
            continue
        seen.add(aid)
        img = images.get(_int(ann.get("image_id")))
        if img is None:
            issues.skipped["annotation(s) whose image_id is not in 'images'"].append(aid)
            continue
        cid = _int(ann.get("category_id"))
        if cid not in categories:
            issues.skipped["annotation(s) whose category_id is not in 'categories'"].append(aid)
            continue
        rle = _segmentation_rle(ann, img, mask_utils, issues)
        if rle is None:
            continue
        area = float(mask_utils.area(rle))
        if area <= 0:
            issues.skipped["annotation(s) with zero area (degenerate, or outside the image)"].append(aid)
            continue
        if not isinstance(ann.get("area"), (int, float)) or isinstance(ann.get("area"), bool):
            issues.repaired["annotation(s) without 'area' (computed from the segmentation)"].append(aid)
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        objects.append(ObjectEntry(aid, img.id, cid, bool(ann.get("iscrowd", 0)), rle, area, (x, y, bw, bh)))
    return CocoIndex(path, digest, images, categories, objects, issues)
