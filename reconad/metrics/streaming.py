"""Streaming AUPRO: ``update(maps, masks)`` batch by batch, ``compute()`` at the end, across processes.

Two modes:

* ``"exact"`` keeps the maps and masks it is given (on their device; a region never spans two maps, so
  nothing can be reduced before the global ordering is known) and computes the exact AUPRO at the end
  (``reconad.metrics.aupro``). Under torch.distributed every rank's maps are gathered first.
* ``"binned"`` keeps four fixed-size sums: per score bin, the number of normal pixels and the sum of
  ``1 / region size`` over anomalous pixels; plus the totals of normal pixels and regions. Memory is
  O(bins) whatever the data size, and the sums are ``all_reduce``-d (SUM) across processes.
  Bins are ``bins`` equal-width intervals of ``score_range``; scores outside it are clamped into the end
  bins (still exact in order, only coarser there).

Error bound of the binned mode. The binned curve's vertices are exact-curve vertices (the point after a
bin is the exact point at the lowest score in that bin), and between two of them both curves are monotone,
inside the box ``dfpr_k x dpro_k`` of bin k. So the areas differ by at most ``sum_k dfpr_k * dpro_k`` over
the bins the limit reaches, divided by the limit: at most ``max_k dfpr_k / fpr_limit`` (because
``sum_k dpro_k <= 1``). ``error_bound()`` returns the first, tighter, sum for the data seen.
"""
from __future__ import annotations

import numpy as np
import torch

from ..ops.pro_curve import LABEL_STRUCTURE, trapezoid_to_limit
from ._pro import _check_limit, aupro, prepare_maps

__all__ = ["AUPRO"]



def _dist_world() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 (rows may differ in number, not in shape)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    counts_i = [int(c.item()) for c in counts]
    padded = t.new_zeros((max(counts_i), *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts_i)])


class AUPRO:
    """Streaming AUPRO (see the module docstring).

    Args:
        fpr_limit: integration limit in (0, 1].
        mode: ``"exact"`` or ``"binned"``.
        bins: number of score bins (binned mode).
        score_range: ``(low, high)`` covered by the bins (binned mode), e.g. (0, 1) for normalised maps.
        device: where the binned sums live (default: the device of the first batch).
    """

    def __init__(self, fpr_limit: float = 0.3, mode: str = "exact", bins: int = 65536,
                 score_range: tuple[float, float] = (0.0, 1.0), device: str | torch.device | None = None) -> None:
        if mode not in ("exact", "binned"):
            raise ValueError(f"AUPRO: mode must be 'exact' or 'binned', got {mode!r}")
        if int(bins) < 1:
            raise ValueError(f"AUPRO: bins must be >= 1, got {bins}")
        lo, hi = (float(v) for v in score_range)
        if not hi > lo:
            raise ValueError(f"AUPRO: score_range must be (low, high) with high > low, got {score_range}")
        self.fpr_limit = _check_limit(fpr_limit)
        self.mode = mode
        self.bins = int(bins)
        self.score_range = (lo, hi)
        self.device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> None:
        self._maps: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []
        self._normal: torch.Tensor | None = None      # (bins,) int64
        self._pro: torch.Tensor | None = None         # (bins,) float64
        self._totals: torch.Tensor | None = None      # (2,) int64: normal pixels, regions

    def _state(self, device: torch.device) -> None:
        if self._normal is None:
            dev = self.device or device
            self._normal = torch.zeros(self.bins, dtype=torch.int64, device=dev)
            self._pro = torch.zeros(self.bins, dtype=torch.float64, device=dev)
            self._totals = torch.zeros(2, dtype=torch.int64, device=dev)

    def bin_index(self, maps: np.ndarray) -> np.ndarray:
        """Bin of every score: floor((s - low) * bins / (high - low)) clamped to [0, bins - 1] (monotone)."""
        lo, hi = self.score_range
        idx = np.floor((np.asarray(maps, dtype=np.float64) - lo) * (self.bins / (hi - lo)))
        return np.clip(idx, 0, self.bins - 1).astype(np.int64)

    def update(self, anomaly_maps: object, masks: object) -> None:
        maps, m = prepare_maps(anomaly_maps, masks, "AUPRO.update")
        if self.mode == "exact":
            if bool(torch.isnan(maps).any()):
                raise ValueError("AUPRO.update: anomaly_maps contain NaN")
            self._maps.append(maps)
            self._masks.append(m.to(torch.uint8) if m.dtype == torch.bool else m)
            return
        from scipy import ndimage

        # binned: labels and histograms with numpy / scipy on the CPU (no GPU labelling kernel here yet)
        self._state(maps.device)
        s = maps.cpu().numpy().reshape(-1)
        if np.isnan(s).any():
            raise ValueError("AUPRO.update: anomaly_maps contain NaN")
        labels, n_regions = ndimage.label(m.cpu().numpy() != 0, structure=LABEL_STRUCTURE)
        labels = labels.reshape(-1)
        sizes = np.bincount(labels, minlength=n_regions + 1)
        idx = self.bin_index(s)
        anom = np.flatnonzero(labels)
        normal_hist = np.bincount(idx, minlength=self.bins) - np.bincount(idx[anom], minlength=self.bins)
        pro_hist = np.bincount(idx[anom], weights=1.0 / sizes[labels[anom]], minlength=self.bins)
        dev = self._normal.device
        self._normal += torch.from_numpy(normal_hist.astype(np.int64)).to(dev)
        self._pro += torch.from_numpy(pro_hist).to(dev)
        self._totals += torch.tensor([int(sizes[0]), n_regions], dtype=torch.int64, device=dev)

    def _reduced(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        if self._normal is None:
            raise ValueError("AUPRO.compute: no data (call update first)")
        normal, pro, totals = self._normal.clone(), self._pro.clone(), self._totals.clone()
        if _dist_world() > 1:
            import torch.distributed as dist

            for t in (normal, pro, totals):
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
        n_normal, n_regions = (int(v) for v in totals.cpu().tolist())
        if n_normal == 0 or n_regions == 0:
            what = "no normal pixel" if n_normal == 0 else "no anomalous pixel"
            raise ValueError(f"AUPRO.compute: the data seen has {what}; the PRO curve is undefined")
        return normal.cpu().numpy(), pro.cpu().numpy(), n_normal, n_regions

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The binned PRO curve ``(fpr, pro)`` (one vertex per bin, from the top bin down, from (0, 0))."""
        if self.mode != "binned":
            raise ValueError("AUPRO.curve: only the binned mode keeps a curve; use reconad.metrics.pro_curve")
        normal, pro, n_normal, n_regions = self._reduced()
        fpr = np.r_[0.0, np.cumsum(normal[::-1]) / n_normal]
        prov = np.clip(np.r_[0.0, np.cumsum(pro[::-1]) / n_regions], 0.0, 1.0)
        return np.clip(fpr, 0.0, 1.0), prov

    def error_bound(self) -> float:
        """Binned mode: a bound on ``|compute() - exact AUPRO|`` for the data seen (see the module docstring)."""
        if self.mode != "binned":
            return 0.0
        fpr, pro = self.curve()
        reach = fpr[:-1] < self.fpr_limit
        return float(np.sum((np.diff(fpr) * np.diff(pro))[reach]) / self.fpr_limit)

    def compute(self) -> float:
        if self.mode == "binned":
            fpr, pro = self.curve()
            return trapezoid_to_limit(fpr, pro, self.fpr_limit) / self.fpr_limit
        if not self._maps:
            raise ValueError("AUPRO.compute: no data (call update first)")
        maps, masks = torch.cat(self._maps), torch.cat(self._masks)
        if _dist_world() > 1:
            maps, masks = _gather_rows(maps), _gather_rows(masks)
        return aupro(maps, masks, self.fpr_limit)
