"""The benchmark's statistics: AUROC of many score vectors at once, mean +- std over seeds, and a stratified
bootstrap over test images, pooled with seeds and paired between methods.

A *group* is one one-class problem (a dataset and a class): the test images every run of it scores. One
bootstrap replicate resamples each group's normal and anomalous test images with replacement (stratified, so
both stay present in their own numbers) and, with those same images, computes every method's and seed's AUROC;
a method's replicate value is the mean over its groups of the mean over its seeds. The 95 % interval is the
2.5 and 97.5 percentiles of the replicate values; the paired difference of two methods uses the same
resampled images for both, over the groups both have, so the noise of the test set cancels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

__all__ = ["Group", "auroc_rows", "bootstrap", "interval", "mean_std"]


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The AUROC of each row of ``scores`` (R, N) against 0/1 ``labels`` (N,): the Mann-Whitney U statistic
    with average ranks for ties, divided by (normals x anomalies)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos = np.asarray(labels) == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUROC needs normal and anomalous images, got {n0} normal and {n1} anomalous")
    ranks = rankdata(scores, axis=1)
    return (ranks[:, pos].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass
class Group:
    """One one-class problem's test images: ``labels`` (N,) and, per method, the scores of its seeds (S, N)."""

    name: str
    labels: np.ndarray
    runs: dict[str, np.ndarray] = field(default_factory=dict)


def bootstrap(groups: list[Group], n_boot: int = 1000, seed: int = 0, chunk: int = 100) -> dict[str, np.ndarray]:
    """Per method, its replicate AUROCs per group: an array (groups, n_boot), NaN where the method lacks the
    group. Group by group, replicate by replicate, the normal then the anomalous images are drawn with
    ``numpy.random.default_rng(seed)``: ``integers(0, n0, (n_boot, n0))`` then ``integers(0, n1, (n_boot, n1))``."""
    rng = np.random.default_rng(seed)
    methods = sorted({m for g in groups for m in g.runs})
    out = {m: np.full((len(groups), n_boot), np.nan) for m in methods}
    for gi, g in enumerate(groups):
        normal, anomalous = np.flatnonzero(g.labels == 0), np.flatnonzero(g.labels == 1)
        draw = np.concatenate([normal[rng.integers(0, len(normal), (n_boot, len(normal)))],
                               anomalous[rng.integers(0, len(anomalous), (n_boot, len(anomalous)))]], axis=1)
        labels = np.r_[np.zeros(len(normal), int), np.ones(len(anomalous), int)]
        for m, scores in g.runs.items():
            for lo in range(0, n_boot, chunk):     # (seeds x chunk, N) at a time: bounded memory
                idx = draw[lo:lo + chunk]
                resampled = scores[:, idx].reshape(-1, idx.shape[1])
                out[m][gi, lo:lo + chunk] = auroc_rows(resampled, labels).reshape(len(scores), -1).mean(0)
    return out


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (1-D)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0
