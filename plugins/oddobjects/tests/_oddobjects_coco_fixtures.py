"""A tiny COCO set drawn with numpy, shared by the coco and rank tests.

Ten 48x40 (width x height) images on a noisy background, each with a red ``disc`` (the normal category)
and, alternately, a blue ``square`` or a green ``triangle``. The annotations exercise the messy cases:
one disc as a compressed RLE, one square as an uncompressed RLE crowd annotation, one degenerate polygon,
one polygon outside the image, one annotation without ``area``, one tiny object, one disc touching the
border; image 3 is grayscale and image 4 RGBA.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

W, H = 48, 40
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220), 3: (40, 200, 60)}
CATEGORIES = [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]


def circle(cx: float, cy: float, r: float, n: int = 24) -> list[float]:
    pts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        pts += [cx + r * math.cos(a), cy + r * math.sin(a)]
    return pts


def _paint(img: np.ndarray, poly: list[float], colour: tuple[int, int, int]) -> np.ndarray:
    m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], H, W))).astype(bool)
    img[m] = colour
    return m


def make_coco(root: Path) -> dict:
    """Write images/ and annotations.json under ``root``; returns paths and the ids of the special cases."""
    rng = np.random.default_rng(0)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    special: dict[str, int] = {}
    aid = 100

    def ann(image_id: int, cat: int, seg, **extra) -> int:
        nonlocal aid
        aid += 1
        a = {"id": aid, "image_id": image_id, "category_id": cat, "segmentation": seg, "iscrowd": 0}
        if isinstance(seg, list) and seg and len(seg[0]) >= 6:
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, H, W))
            a["area"] = float(mask_utils.area(rle))
            a["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        a.update(extra)
        anns.append(a)
        return aid

    for i in range(1, 11):
        img = (rng.integers(90, 160, size=(H, W, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
        cx, cy, r = 14 + rng.uniform(-2, 2), 20 + rng.uniform(-2, 2), 7 + rng.uniform(-1, 1)
        if i == 5:
            cx = 4.0                                   # touches the left border
        disc = circle(cx, cy, r)
        m = _paint(img, disc, COLOURS[1])
        if i == 2:                                     # the disc as a compressed RLE
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            special["rle"] = ann(i, 1, {"size": [H, W], "counts": rle["counts"].decode("ascii")},
                                 area=float(m.sum()))
        elif i == 6:
            special["no_area"] = ann(i, 1, [disc])
            del anns[-1]["area"]
        else:
            k = ann(i, 1, [disc])
            if i == 5:
                special["border"] = k
        if i % 2:
            x0, y0, s = 30.0, 12.0, 12.0
            sq = [x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]
            _paint(img, sq, COLOURS[2])
            ann(i, 2, [sq])
        else:
            tri = [30.0, 28.0, 44.0, 28.0, 37.0, 12.0]
            _paint(img, tri, COLOURS[3])
            ann(i, 3, [tri])
        if i == 7:                                     # a crowd annotation as an uncompressed RLE
            cm = np.zeros((H, W), np.uint8)
            cm[30:38, 2:20] = 1
            flat = cm.flatten(order="F")
            counts, cur, run = [], 0, 0
            for v in flat:
                if v != cur:
                    counts.append(run)
                    cur, run = v, 0
                run += 1
            counts.append(run)
            special["crowd"] = ann(i, 2, {"size": [H, W], "counts": counts}, iscrowd=1, area=float(cm.sum()))
        if i == 8:
            special["degenerate"] = ann(i, 3, [[1.0, 1.0, 5.0, 5.0]], area=0.0)
            special["outside"] = ann(i, 3, [[100.0, 100.0, 120.0, 100.0, 110.0, 120.0]])
            special["tiny"] = ann(i, 2, [[40.0, 2.0, 43.0, 2.0, 43.0, 5.0, 40.0, 5.0]])
        name = f"{i:03d}.png"
        if i == 3:
            Image.fromarray(img[..., 0]).save(img_dir / name)                        # grayscale
        elif i == 4:
            alpha = np.full((H, W, 1), 255, np.uint8)
            Image.fromarray(np.concatenate([img, alpha], 2), mode="RGBA").save(img_dir / name)
        else:
            Image.fromarray(img).save(img_dir / name)
        images.append({"id": i, "file_name": name, "width": W, "height": H})
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return {"annotations": str(path), "images": str(img_dir), "special": special, "n_images": 10}


def make_dirty_coco(root: Path, n: int = 24) -> dict:
    """``n`` images of red discs (category ``disc``) and two labelling errors of the kind §4.4 finds: a blue
    square labelled ``disc`` and one segmentation that merges two discs. Returns paths and the two ids."""
    rng = np.random.default_rng(1)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(1, n + 1):
        img = (rng.integers(90, 160, size=(H, W, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
        polys = [circle(24 + rng.uniform(-3, 3), 20 + rng.uniform(-3, 3), 9 + rng.uniform(-1.5, 1.5))]
        if i == n - 1:      # the merged segmentation: two discs side by side as one object
            polys = [circle(12, 20, 7), circle(34, 20, 7)]
        for p in polys:
            _paint(img, p, COLOURS[1])
        if i == n:          # the mislabelled object: a blue square annotated as a disc
            img[:] = (rng.integers(90, 160, size=(H, W, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
            polys = [[16.0, 12.0, 32.0, 12.0, 32.0, 28.0, 16.0, 28.0]]
            _paint(img, polys[0], COLOURS[2])
        anns.append({"id": 1000 + i, "image_id": i, "category_id": 1, "segmentation": polys, "iscrowd": 0,
                     "area": 1.0})
        Image.fromarray(img).save(img_dir / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"{i:03d}.png", "width": W, "height": H})
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return {"annotations": str(path), "images": str(img_dir), "merged": 1000 + n - 1, "mislabelled": 1000 + n}
