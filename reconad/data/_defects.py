"""Synthetic surface defects on grey images in [0, 1] whose values lie on the 8-bit grid (k / 255).

Each defect returns the changed image and the region it meant to change; :func:`apply_defect` nudges by one
8-bit level any pixel of the region that happened to keep its value (a pasted pixel equal to the old one,
a scratch over a pixel of the scratch's colour), so the mask, ``changed != clean``, is exactly the region:
exactly where pixels changed, and without holes. Sizes scale with the image side, so defects stay visible
at every ``image_size``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["DEFECTS", "apply_defect", "quantize"]


def quantize(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the 8-bit grid, as if saved as an 8-bit image."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _coords(s: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    return yy + 0.5, xx + 0.5     # pixel centres


def scratch(img: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A thin straight line, bright on dark surroundings and dark on bright ones."""
    s = img.shape[0]
    length, width = rng.uniform(0.4, 0.9) * s, max(1.0, rng.uniform(1.0, 2.5) * s / 64)
    angle = rng.uniform(0.0, np.pi)
    cy, cx = rng.uniform(0.25 * s, 0.75 * s, size=2)
    dy, dx = np.sin(angle), np.cos(angle)
    yy, xx = _coords(s)
    t = np.clip((yy - cy) * dy + (xx - cx) * dx, -length / 2, length / 2)   # projection onto the segment
    region = np.hypot(yy - cy - t * dy, xx - cx - t * dx) <= width / 2
    value = rng.uniform(0.85, 1.0) if img[region].mean() < 0.5 else rng.uniform(0.0, 0.15)
    out = img.copy()
    out[region] = value
    return quantize(out), region


def stain(img: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rotated elliptical blob of shifted intensity with a smooth rim (flat core, smoothstep falloff)."""
    s = img.shape[0]
    a, b = rng.uniform(0.12, 0.3, size=2) * s
    angle = rng.uniform(0.0, np.pi)
    cy, cx = rng.uniform(0.3 * s, 0.7 * s, size=2)
    yy, xx = _coords(s)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    r = np.hypot(u / a, v / b)
    t = np.clip((1.0 - r) / 0.4, 0.0, 1.0)           # 1 inside r <= 0.6, 0 outside the ellipse
    weight = t * t * (3.0 - 2.0 * t)
    sign = 1.0 if img[r < 1].mean() < 0.5 else -1.0    # towards the side with room, so it shows
    return quantize(img + sign * rng.uniform(0.25, 0.45) * weight), r < 1


def paste(img: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle copied from ``donor``, a patch of another texture at the same scale."""
    s = img.shape[0]
    h, w = np.maximum(2, np.round(rng.uniform(0.2, 0.4, size=2) * s).astype(int))
    y, x = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
    out = img.copy()
    out[y:y + h, x:x + w] = donor[y:y + h, x:x + w]
    region = np.zeros(img.shape, dtype=bool)
    region[y:y + h, x:x + w] = True
    return out, region


DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": scratch, "stain": stain, "paste": paste}


def apply_defect(kind: str, img: np.ndarray, rng: np.random.Generator,
                 donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(defective image, bool mask of the changed pixels); redrawn until enough pixels changed to be seen."""
    min_pixels = max(1, img.size // 400)
    for _ in range(100):
        out, region = DEFECTS[kind](img, rng, donor)
        same = region & (out == img)
        out[same] = quantize(img[same] + np.where(img[same] < 0.5, 1.0, -1.0) / 255.0)
        mask = out != img
        if mask.sum() >= min_pixels:
            return out, mask
    raise RuntimeError(f"defect {kind!r} changed fewer than {min_pixels} pixels in 100 draws")  # flat image
