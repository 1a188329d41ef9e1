"""Pixel-level metrics: pixel AUROC and the per-region overlap (PRO) curve / AUPRO.

The PRO definition (MVTec AD protocol) is documented in ``reconad.ops.pro_curve``; the work runs there
(C++ / CUDA kernels, or the numpy / scipy fallback).
"""
from __future__ import annotations

import numpy as np
import torch

from ..ops.pro_curve import pro_curve as _pro_curve_op
from ._image import auroc

__all__ = ["aupro", "pixel_auroc", "prepare_maps", "pro_curve"]

_EXACT = (torch.float32, torch.float64)


def prepare_maps(anomaly_maps: object, masks: object, what: str = "pro_curve") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert to tensors on the maps' device: float32 / float64 maps (N, H, W) and bool or
    uint8 masks (N, H, W), nonzero = anomalous. (H, W) inputs become one map. No precision is lost:
    half / bfloat16 become float32, integers float64."""
    maps = anomaly_maps if isinstance(anomaly_maps, torch.Tensor) else torch.from_numpy(np.asarray(anomaly_maps))
    m = masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if m.dim() == 2:
        m = m.unsqueeze(0)
    if maps.dim() != 3:
        raise ValueError(f"{what}: anomaly_maps must be (N, H, W) (or (H, W)), got shape {tuple(maps.shape)}")
    if tuple(m.shape) != tuple(maps.shape):
        raise ValueError(f"{what}: masks must have the anomaly maps' shape {tuple(maps.shape)}, "
                         f"got {tuple(m.shape)}")
    if maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.float()
    elif maps.dtype not in _EXACT:
        if maps.dtype == torch.bool or maps.is_complex():
            raise ValueError(f"{what}: anomaly_maps must be real numbers, got dtype {maps.dtype}")
        maps = maps.double()
    m = m.to(maps.device)
    if m.dtype not in (torch.bool, torch.uint8):
        bad = (m != 0) & (m != 1)
        if bool(bad.any()):
            raise ValueError(f"{what}: masks must be boolean or 0/1, found value {m[bad][0].item()!r}")
        m = m != 0
    return maps.detach(), m


def _check_limit(fpr_limit: float) -> float:
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    return limit


def _result(anomaly_maps: object, masks: object, fpr_limit: float, return_curve: bool, what: str):
    maps, m = prepare_maps(anomaly_maps, masks, what)
    res = _pro_curve_op(maps, m, _check_limit(fpr_limit), return_curve)
    if res.n_normal == 0:
        raise ValueError(f"{what}: every pixel of the {maps.shape[0]} mask(s) is anomalous, so the false positive "
                         "rate is undefined; include normal pixels")
    if res.n_regions == 0:
        raise ValueError(f"{what}: the {maps.shape[0]} mask(s) contain no anomalous pixel, so the per-region "
                         "overlap is undefined; evaluate PRO on a set with at least one anomaly")
    return res


def pro_curve(anomaly_maps: object, masks: object, fpr_limit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """PRO curve ``(fpr, pro)`` (float64, starting at (0, 0), one point per distinct score, descending).

    With ``fpr_limit < 1`` the curve stops at the first point whose FPR exceeds the limit. Raises
    ValueError when the set has no anomalous or no normal pixel.
    """
    res = _result(anomaly_maps, masks, fpr_limit, True, "pro_curve")
    return res.fpr, res.pro


def aupro(anomaly_maps: object, masks: object, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD protocol): area / limit, in [0, 1].

    Exact (float64 / int64 accumulation, no binning). Raises ValueError when the set has no anomalous or
    no normal pixel (the curve is undefined), and for ``fpr_limit`` outside (0, 1].
    """
    limit = _check_limit(fpr_limit)
    res = _result(anomaly_maps, masks, limit, False, "aupro")
    return res.area / limit


def pixel_auroc(anomaly_maps: object, masks: object) -> float:
    """AUROC over all pixels of the set (each pixel one sample; ties as scikit-learn)."""
    maps, m = prepare_maps(anomaly_maps, masks, "pixel_auroc")
    return auroc(maps.reshape(-1), m.reshape(-1) != 0)
