"""Independent slow references for the metric tests: the official MVTec AD evaluation algorithm in float64
(per-image scipy.ndimage.label with a 3x3 structure, one argsort of every pixel, bisect-based trapezoid)."""
from __future__ import annotations

from bisect import bisect

import numpy as np
from scipy import ndimage


def official_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    structure = np.ones((3, 3), dtype=int)
    n = len(maps)
    fp_changes = np.zeros(maps.shape, dtype=np.float64)
    pro_changes = np.zeros(maps.shape, dtype=np.float64)
    num_ok, num_regions = 0, 0
    for i in range(n):
        labeled, k = ndimage.label(masks[i] != 0, structure)
        num_regions += k
        ok = labeled == 0
        num_ok += int(ok.sum())
        fp_changes[i][ok] = 1
        for r in range(1, k + 1):
            region = labeled == r
            pro_changes[i][region] = 1.0 / region.sum()
    scores = np.asarray(maps, dtype=np.float64).ravel()
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    fprs = np.cumsum(fp_changes.ravel()[order]) / num_ok
    pros = np.cumsum(pro_changes.ravel()[order]) / num_regions
    keep = np.append(np.diff(scores) != 0, np.True_)
    fprs = np.clip(fprs[keep], 0, 1)
    pros = np.clip(pros[keep], 0, 1)
    return np.r_[0.0, fprs], np.r_[0.0, pros]


def official_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    x, y = np.asarray(x), np.asarray(y)
    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    mask = x <= x_max
    x, y = x[mask], y[mask]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def official_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    fpr, pro = official_pro_curve(maps, masks)
    return official_trapezoid(fpr, pro, limit) / limit


def blob_masks(rng: np.random.Generator, n: int, h: int, w: int, level: float = 0.56) -> np.ndarray:
    """Blob-shaped ground truth: thresholded smoothed noise (the benchmark uses the same generator).

    Every image gets at least one blob: where no pixel of an image's smoothed noise passes `level` (about one
    small image in four), that image is thresholded at its own 97th percentile instead, so a test never draws
    a set without anomalies by chance (PRO is undefined there); tests that want empty masks clear them."""
    field = ndimage.gaussian_filter(rng.random((n, h, w)), (0, 3, 3))
    masks = field > level
    for i in np.flatnonzero(~masks.any(axis=(1, 2))):
        masks[i] = field[i] > np.quantile(field[i], 0.97)
    return masks


def pro_case(rng: np.random.Generator, kind: str, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Maps and masks of one PRO test case: ``kind`` picks the edge case (ties, single pixels, corner-only
    connections, regions on the border, images without anomalies) or plain random blobs."""
    n, h, w = 6, 23, 31
    maps = rng.random((n, h, w))
    if kind == "ties":                                   # few distinct scores: large tie groups
        maps = np.floor(maps * 12) / 12
        masks = blob_masks(rng, n, h, w)
    elif kind == "single_pixels":                        # sparse isolated pixels, some diagonal neighbours
        masks = rng.random((n, h, w)) < 0.03
    elif kind == "diagonal":                             # regions connected only through corners
        masks = np.zeros((n, h, w), bool)
        for i in range(n):
            off = int(rng.integers(-h, w))
            for y in range(h):
                for x in (y + off, h - y + off + 5):
                    if 0 <= x < w:
                        masks[i, y, x] = True
    elif kind == "border":                               # regions on every edge and corner
        masks = blob_masks(rng, n, h, w, 0.6)
        masks[:, 0, : w // 3] = True
        masks[:, -1, -4:] = True
        masks[:, h // 2 :, 0] = True
        masks[:, 0, -1] = True
    elif kind == "no_anomaly_images":                    # half the images have an empty mask
        masks = blob_masks(rng, n, h, w)
        masks[::2] = False
    else:
        masks = blob_masks(rng, n, h, w)
    # anomalous pixels score a little higher, so the curves are not all near the diagonal
    maps = maps + 0.25 * masks * (kind != "ties")
    if not masks.any():
        masks[0, 0, 0] = True
    return maps.astype(dtype), masks
