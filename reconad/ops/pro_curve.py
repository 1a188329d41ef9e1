"""``reconad.ops.pro_curve``: the per-region-overlap (PRO) curve of the MVTec AD evaluation protocol.

For anomaly maps ``s`` (N, H, W) and masks ``m`` (N, H, W; nonzero = anomalous):

* ground-truth regions are the 8-connected components of each mask (they never span two images);
* one global descending ordering of all pixel scores; every distinct score ``t`` is one curve point
  (equal scores form one point), predicting ``s >= t``;
* ``fpr(t)`` = normal pixels with ``s >= t`` / all normal pixels of the set;
* ``pro(t)`` = mean over all regions of (region pixels with ``s >= t``) / (region size);
* the curve starts at (0, 0); the area is the trapezoid rule up to ``fpr_limit``, with the curve
  interpolated linearly at the limit (the official ``trapezoid(..., x_max=limit)``). It is *not* divided
  by the limit here (``reconad.metrics.aupro`` does that).

Only thresholds down to the first point whose FPR exceeds the limit matter, so the kernels find that cut
with a histogram of normal scores and order only the pixels above it. The returned curve stops at that
first point past the limit (all of it when ``fpr_limit >= 1``).

Backends: C++ (``csrc/pro_curve/cpu``: union-find labelling, histogram cut, parallel LSD radix sort),
CUDA (``csrc/pro_curve/cuda``) and the numpy / scipy fallback below (``pro_curve_reference``).
All accumulate counts in int64 and sums in float64.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._extension import define_op

__all__ = ["LABEL_STRUCTURE", "ProCurveResult", "pro_curve", "pro_curve_reference", "trapezoid_to_limit"]

# scipy.ndimage.label structure for (N, H, W) masks: 8-connectivity inside each map, none across maps
LABEL_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
LABEL_STRUCTURE[1] = True


class ProCurveResult(NamedTuple):
    fpr: np.ndarray          # float64 curve points from (0, 0), empty unless asked for
    pro: np.ndarray
    area: float              # trapezoid area up to fpr_limit (not divided by it); 0.0 for a degenerate set
    n_normal: int            # normal pixels of the set
    n_regions: int           # ground-truth regions of the set


def _max_count(limit: float, n: int) -> int:
    """Largest c with c / n <= limit in float64 (the comparison the official code makes)."""
    c = int(np.floor(limit * n))
    while c + 1 <= n and (c + 1) / n <= limit:
        c += 1
    while c > 0 and c / n > limit:
        c -= 1
    return min(c, n)


def trapezoid_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """The official ``trapezoid(x, y, x_max=limit)``: area under the piecewise-linear curve for x <= limit,
    the last segment cut at the limit by linear interpolation. ``fpr`` must be non-decreasing."""
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(pro, dtype=np.float64)
    correction = 0.0
    ins = int(np.searchsorted(x, limit, side="right"))    # x[ins-1] <= limit < x[ins]
    if 0 < ins < x.shape[0] and x[ins - 1] != limit:
        y_at = y[ins - 1] + (y[ins] - y[ins - 1]) * (limit - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_at + y[ins - 1]) * (limit - x[ins - 1])
    x, y = x[:ins], y[:ins]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def pro_curve_reference(anomaly_maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 1.0,
                        return_curve: bool = True) -> ProCurveResult:
    """numpy / scipy implementation (the fallback): scipy.ndimage.label, a partition for the cut, argsort."""
    from scipy import ndimage

    s = np.asarray(anomaly_maps)
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    s = s.reshape(-1) + s.dtype.type(0)         # -0.0 + 0.0 = +0.0: one curve point for both zeros
    if np.isnan(s).any():
        raise ValueError(f"pro_curve: anomaly_maps contain NaN at {int(np.isnan(s).sum())} pixel(s)")
    labels, n_regions = ndimage.label(np.asarray(masks) != 0, structure=LABEL_STRUCTURE)
    labels = labels.reshape(-1)
    sizes = np.bincount(labels, minlength=n_regions + 1)
    n_normal = int(sizes[0])
    empty = np.zeros(0, np.float64)
    if n_normal == 0 or n_regions == 0:
        return ProCurveResult(empty, empty, 0.0, n_normal, int(n_regions))
    k = _max_count(fpr_limit, n_normal)
    if k < n_normal:
        normal = s[labels == 0]
        cut = np.partition(normal, n_normal - k - 1)[n_normal - k - 1]   # the (k+1)-th largest normal score
        keep = np.flatnonzero(s >= cut)
        s, labels = s[keep], labels[keep]
    order = np.argsort(-s, kind="stable")
    s, labels = s[order], labels[order]
    weight = np.zeros(labels.shape[0], np.float64)
    anom = labels > 0
    weight[anom] = 1.0 / sizes[labels[anom]]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.shape[0] - 1]
    fp = np.cumsum(~anom, dtype=np.int64)[last]
    fpr = np.clip(np.r_[0.0, fp / n_normal], 0.0, 1.0)
    pro = np.clip(np.r_[0.0, np.cumsum(weight)[last] / n_regions], 0.0, 1.0)
    if k < n_normal:                                  # stop at the first point past the limit
        stop = int(np.argmax(fp > k)) + 2
        fpr, pro = fpr[:stop], pro[:stop]
    area = trapezoid_to_limit(fpr, pro, fpr_limit)
    if not return_curve:
        fpr, pro = empty, empty
    return ProCurveResult(fpr, pro, area, n_normal, int(n_regions))


def _fake(anomaly_maps, masks, fpr_limit, return_curve):  # noqa: ANN001 - fake-tensor signature
    n = torch.library.get_ctx().new_dynamic_size()
    f64 = dict(dtype=torch.float64, device=anomaly_maps.device)
    return anomaly_maps.new_empty((n,), **f64), anomaly_maps.new_empty((n,), **f64), \
        anomaly_maps.new_empty((3,), **f64)


def _kernel(anomaly_maps: torch.Tensor, masks: torch.Tensor, fpr_limit: float, return_curve: bool) -> ProCurveResult:
    fpr, pro, stats = torch.ops.reconad.pro_curve(anomaly_maps.contiguous(), masks.contiguous(),
                                                  float(fpr_limit), bool(return_curve))
    st = stats.cpu().tolist()
    return ProCurveResult(fpr.cpu().numpy(), pro.cpu().numpy(), float(st[0]), int(st[1]), int(st[2]))


def _fallback(anomaly_maps: torch.Tensor, masks: torch.Tensor, fpr_limit: float, return_curve: bool) -> ProCurveResult:
    return pro_curve_reference(anomaly_maps.cpu().numpy(), masks.cpu().numpy(), fpr_limit, return_curve)


# no autograd: the curve is a metric, not a training signal
_OP = define_op("pro_curve", fallback=_fallback, kernel=_kernel, fake=_fake)


def pro_curve(anomaly_maps: torch.Tensor | np.ndarray, masks: torch.Tensor | np.ndarray, fpr_limit: float = 1.0,
              return_curve: bool = True) -> ProCurveResult:
    """PRO curve and its area up to ``fpr_limit`` (see the module docstring) on the best backend.

    ``anomaly_maps``: (N, H, W) float32 or float64; ``masks``: (N, H, W) bool or uint8 (nonzero =
    anomalous), on the same device. Validation and dtype conversion are ``reconad.metrics``' job.
    """
    if isinstance(anomaly_maps, np.ndarray):
        anomaly_maps = torch.from_numpy(np.ascontiguousarray(anomaly_maps))
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    return _OP(anomaly_maps, masks, fpr_limit, return_curve)
