"""Decision thresholds chosen without test labels.

Every threshold here is used as ``score > threshold`` (anomalous), like ``f1_score`` and ``tpr_tnr``.

* ``quantile_threshold``: a quantile of held-out normal scores.
* ``normalized_score_threshold``: paper 000 (ODDObjects) min-max normalises the scores of the scored set to
  [0, 1] and calls a sample anomalous when its normalised error exceeds gamma (0.9 found empirically);
  returned here as the equivalent raw-score threshold ``min + gamma (max - min)``.
* ``area_threshold``: paper 004 (Bauer et al., following Bergmann et al.'s protocol): on held-out normal
  heatmaps, the lowest threshold at which no thresholded heatmap (``map > t``) has an 8-connected
  component larger than ``min_area`` pixels. A test image is then anomalous when
  ``largest_component_area(map, t) > min_area``, and its anomalous pixels are ``area_segmentation(map, t,
  min_area)``: those in such components.
"""
from __future__ import annotations

import numpy as np

from ..ops.pro_curve import LABEL_STRUCTURE
from ._convert import as_scores, to_numpy

__all__ = ["area_segmentation", "area_threshold", "largest_component_area", "normalize_scores",
           "normalized_score_threshold", "quantile_threshold"]


def quantile_threshold(normal_scores: object, q: float = 0.99) -> float:
    """The ``q`` quantile of held-out normal scores (numpy's default linear interpolation)."""
    if not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"quantile_threshold: q must be in [0, 1], got {q}")
    s = as_scores(normal_scores, "normal_scores")
    if s.size == 0:
        raise ValueError("quantile_threshold: normal_scores is empty")
    return float(np.quantile(s, float(q)))


def normalize_scores(scores: object) -> np.ndarray:
    """Min-max normalisation over the scored set to [0, 1] (paper 000); all zeros when the scores are equal."""
    s = as_scores(scores)
    if s.size == 0:
        return s
    lo, hi = s.min(), s.max()
    return np.zeros_like(s) if hi == lo else (s - lo) / (hi - lo)


def normalized_score_threshold(scores: object, gamma: float = 0.9) -> float:
    """Raw-score threshold equivalent to ``normalize_scores(scores) > gamma`` (paper 000, gamma = 0.9).

    ``scores`` is the scored set itself (no labels are used). Note the comparison: for a score ``x``,
    ``x > min + gamma (max - min)`` can differ from ``(x - min) / (max - min) > gamma`` by one float rounding;
    use ``normalize_scores(scores) > gamma`` where that matters.
    """
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"normalized_score_threshold: gamma must be in [0, 1], got {gamma}")
    s = as_scores(scores)
    if s.size == 0:
        raise ValueError("normalized_score_threshold: scores is empty")
    lo, hi = float(s.min()), float(s.max())
    return lo + float(gamma) * (hi - lo)


def _as_maps(maps: object, what: str) -> np.ndarray:
    m = to_numpy(maps)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"{what}: maps must be (N, H, W) or (H, W), got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
        raise ValueError(f"{what}: maps must be real numbers, got dtype {m.dtype}")
    if np.issubdtype(m.dtype, np.floating) and np.isnan(m).any():
        raise ValueError(f"{what}: maps contain NaN")
    return m


def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of each (H, W) slice (never across slices): labels, and each label's area
    (index 0: the background)."""
    from scipy import ndimage

    labels, n = ndimage.label(binary, structure=LABEL_STRUCTURE)
    return labels, np.bincount(labels.reshape(-1), minlength=n + 1)


def _largest(binary: np.ndarray) -> np.ndarray:
    """Largest 8-connected component area of each (H, W) slice."""
    labels, sizes = _components(binary)
    out = np.zeros(binary.shape[0], np.int64)
    if sizes.shape[0] == 1:
        return out
    flat = labels.reshape(-1)
    owner = np.zeros(sizes.shape[0], np.int64)       # which map each component lies in
    fg = np.flatnonzero(flat)
    owner[flat[fg]] = fg // (binary.shape[1] * binary.shape[2])
    np.maximum.at(out, owner[1:], sizes[1:])
    return out


def largest_component_area(maps: object, threshold: float) -> np.ndarray:
    """Area (pixels) of the largest 8-connected component of ``map > threshold``, per map (int64, (N,))."""
    m = _as_maps(maps, "largest_component_area")
    return _largest(m > threshold)


def area_segmentation(maps: object, threshold: float, min_area: int) -> np.ndarray:
    """The pixels of ``map > threshold`` that lie in an 8-connected component of more than ``min_area``
    pixels, per map: bool, the maps' shape ((H, W) input: (1, H, W)). A map has such a pixel iff
    ``largest_component_area(map, threshold) > min_area``."""
    m = _as_maps(maps, "area_segmentation")
    labels, sizes = _components(m > threshold)
    keep = sizes > int(min_area)
    keep[0] = False                                   # the background
    return keep[labels]


def area_threshold(normal_maps: object, min_area: int) -> float:
    """Paper 004's threshold: the lowest ``t`` (one of the maps' values) such that no ``map > t`` of the
    held-out normal maps has a connected component (8-connectivity) of more than ``min_area`` pixels.

    The largest component only shrinks as ``t`` grows, so this is a binary search over the distinct values
    (one labelling of all maps per step). ``min_area`` must be below H * W (else every threshold passes).
    """
    m = _as_maps(normal_maps, "area_threshold")
    h, w = m.shape[1:]
    if not 0 <= int(min_area) < h * w:
        raise ValueError(f"area_threshold: min_area must be in [0, H*W) = [0, {h * w}), got {min_area}")
    values = np.unique(m)
    ok = lambda t: int(_largest(m > t).max(initial=0)) <= min_area  # noqa: E731
    lo, hi = 0, values.shape[0] - 1          # ok(values[hi]) holds: nothing exceeds the maximum
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(values[mid]):
            hi = mid
        else:
            lo = mid + 1
    return float(values[lo])
