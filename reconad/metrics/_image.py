"""Image-level (and flattened pixel-level) binary metrics: ROC, AUROC, EER, F1, TPR / TNR, and the confusion
counts and rates of given decisions.

Conventions (the same everywhere in ``reconad.metrics``):

* ``labels``: True / 1 = anomalous (the positive class); ``scores``: higher = more anomalous.
* Curves (``roc_curve``, ``f1_max``) sweep every distinct score ``t`` and predict ``score >= t``
  (scikit-learn's convention; equal scores form one point).
* A fixed decision threshold (``f1_score``, ``tpr_tnr``) predicts anomalous when ``score > threshold``
  (paper 000, Algorithm 2: "if error > gamma then anomaly"), so a threshold fitted on normal data as the
  largest normal score flags none of them.

Counts are int64 and the areas are exact rationals rounded once, so ``auroc`` equals scikit-learn's
``roc_auc_score`` (ties handled the same way: one diagonal segment per tie group) up to float rounding.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._convert import as_labels, as_scores, to_numpy

__all__ = ["Confusion", "auroc", "confusion", "decision_rates", "eer", "f1_max", "f1_score", "roc_curve", "tpr_tnr"]


def _counts(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Cumulative (tp, fp) at every distinct score, descending; with the distinct scores and P, N."""
    s = as_scores(scores)
    y = as_labels(labels, s.shape[0])
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.shape[0] - 1] if s.size else np.zeros(0, np.int64)
    tp = np.cumsum(y, dtype=np.int64)[last]
    fp = (last + 1) - tp
    pos = int(y.sum())
    neg = int(y.shape[0] - pos)
    return tp, fp, s[last], pos, neg


def _need_both(pos: int, neg: int, what: str) -> None:
    if pos == 0 or neg == 0:
        missing = "anomalous (label 1)" if pos == 0 else "normal (label 0)"
        raise ValueError(f"{what} needs both classes, but there is no {missing} sample "
                         f"({pos} anomalous, {neg} normal); it is undefined for one class")


def roc_curve(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` at every distinct score (descending), predicting ``score >= t``.

    Starts at ``(0, 0)`` with threshold ``+inf``; equals scikit-learn's ``roc_curve(...,
    drop_intermediate=False)``. Raises ValueError when ``labels`` hold one class only.
    """
    tp, fp, thr, pos, neg = _counts(scores, labels)
    _need_both(pos, neg, "roc_curve")
    fpr = np.r_[0.0, fp / neg]
    tpr = np.r_[0.0, tp / pos]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(scores: object, labels: object) -> float:
    """Area under the ROC curve (ties as scikit-learn's ``roc_auc_score``). ValueError for one class only."""
    tp, fp, _, pos, neg = _counts(scores, labels)
    _need_both(pos, neg, "auroc")
    tp = np.r_[0, tp]
    fp = np.r_[0, fp]
    # trapezoids in integers: sum (fp_k - fp_{k-1}) (tp_k + tp_{k-1}) = 2 P N AUC, exact in int64 up to ~3e9 pixels
    twice = int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]), dtype=np.int64))
    return twice / (2.0 * pos * neg)


def eer(scores: object, labels: object) -> float:
    """Equal error rate: where the ROC curve crosses FPR = FNR (= 1 - TPR), interpolated linearly between
    the two ROC points that bracket it. ValueError for one class only."""
    fpr, tpr, _ = roc_curve(scores, labels)
    d = fpr - (1.0 - tpr)                     # increasing from -1 (at (0,0)) to +1 (at (1,1))
    k = int(np.argmax(d >= 0))                # first point at or past the crossing; d[0] = -1 < 0
    if d[k] == 0:
        return float(fpr[k])
    t = -d[k - 1] / (d[k] - d[k - 1])
    f = fpr[k - 1] + t * (fpr[k] - fpr[k - 1])
    return float(f)


class Confusion(NamedTuple):
    """Confusion counts of binary decisions (positive = anomalous)."""

    tp: int
    fp: int
    fn: int
    tn: int


def _count(p: np.ndarray, y: np.ndarray) -> Confusion:
    tp = int(np.count_nonzero(p & y))
    fp = int(np.count_nonzero(p & ~y))
    fn = int(np.count_nonzero(~p & y))
    return Confusion(tp, fp, fn, int(p.shape[0]) - tp - fp - fn)


def confusion(predicted: object, labels: object) -> Confusion:
    """``(tp, fp, fn, tn)`` of boolean decisions ``predicted`` (True / 1 = anomalous) against ``labels``, over
    all entries (images ``(N,)``, or pixels ``(N, H, W)``: flattened). Equals scikit-learn's
    ``confusion_matrix(labels, predicted).ravel()`` reordered."""
    p = to_numpy(predicted)
    p = as_labels(p, p.size, "predicted")
    return _count(p, as_labels(labels, p.shape[0], against="predictions"))


def decision_rates(predicted: object, labels: object) -> dict[str, float | None]:
    """TPR, TNR, their ``mean`` (balanced accuracy; paper 004's Table 2) and F1 of boolean decisions (see
    ``confusion``), each None where it is 0 / 0 (TPR without anomalous samples, TNR without normal ones, F1
    with neither an anomalous sample nor a positive decision), so a report can say "undefined"."""
    c = confusion(predicted, labels)
    tpr = c.tp / (c.tp + c.fn) if c.tp + c.fn else None
    tnr = c.tn / (c.tn + c.fp) if c.tn + c.fp else None
    mean = (tpr + tnr) / 2 if tpr is not None and tnr is not None else None
    den = 2 * c.tp + c.fp + c.fn
    return {"tpr": tpr, "tnr": tnr, "mean": mean, "f1": 2 * c.tp / den if den else None}


def _confusion(scores: object, labels: object, threshold: float) -> Confusion:
    s = as_scores(scores)
    return _count(s > float(threshold), as_labels(labels, s.shape[0]))


def f1_score(scores: object, labels: object, threshold: float) -> float:
    """F1 of the decision ``score > threshold``: 2TP / (2TP + FP + FN); 0.0 when that is 0 / 0 (no anomalous
    sample and none predicted), as scikit-learn's ``zero_division=0``."""
    tp, fp, fn, _ = _confusion(scores, labels, threshold)
    den = 2 * tp + fp + fn
    return 0.0 if den == 0 else 2.0 * tp / den


def f1_max(scores: object, labels: object, return_threshold: bool = False) -> float | tuple[float, float]:
    """Largest F1 over every threshold ``score >= t`` (t a distinct score). With ``return_threshold``, also
    returns that ``t``. ValueError when there is no anomalous sample (F1 is 0 everywhere)."""
    tp, fp, thr, pos, neg = _counts(scores, labels)
    if pos == 0:
        raise ValueError(f"f1_max needs at least one anomalous (label 1) sample, got 0 of {neg}")
    f1 = 2.0 * tp / (tp + fp + pos)
    k = int(np.argmax(f1))
    return (float(f1[k]), float(thr[k])) if return_threshold else float(f1[k])


def tpr_tnr(scores: object, labels: object, threshold: float) -> tuple[float, float]:
    """``(TPR, TNR)`` of the decision ``score > threshold`` (paper 004, eq. 4; its Table 2 reports their mean).
    ValueError when a class is missing (its rate would be 0 / 0)."""
    tp, fp, fn, tn = _confusion(scores, labels, threshold)
    _need_both(tp + fn, tn + fp, "tpr_tnr")
    return tp / (tp + fn), tn / (tn + fp)
