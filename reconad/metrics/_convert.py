"""Input conversion shared by the metrics: numpy arrays or torch tensors (any device) to validated numpy."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_labels", "as_scores", "to_numpy"]


def to_numpy(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()               # exact: every half / bfloat16 value is a float32 value
        return x.cpu().numpy()
    return np.asarray(x)


def as_scores(scores: object, name: str = "scores") -> np.ndarray:
    """1-D float64 scores (exact for every float dtype and for integers below 2**53); NaN is rejected."""
    s = to_numpy(scores)
    if s.dtype == np.bool_ or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False).reshape(-1)
    if np.isnan(s).any():
        raise ValueError(f"{name} contains NaN at {int(np.isnan(s).sum())} position(s)")
    return s


def as_labels(labels: object, n: int, name: str = "labels", against: str = "scores") -> np.ndarray:
    """1-D boolean labels (True = anomalous); only 0/1 (or bool) values are accepted. ``n``: the number of
    entries of ``against`` (what the labels are paired with, named in the error)."""
    y = to_numpy(labels).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but {against} have {n}; they must match one to one")
    if y.dtype != np.bool_:
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"{name} must be 0/1 or boolean, found value {y[bad][0]!r}")
        y = y != 0
    return y
