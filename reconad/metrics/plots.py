"""ROC, PRO, score-histogram and training-curve plots as PNG files (matplotlib's Agg backend; no display needed).

Each file is written through ``reconad.io.atomic_path``: a temporary file in the target folder moved into place
with ``os.replace`` (a reader never sees a half-written PNG), with the same permissions as every other file a
run writes.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..io import atomic_path

__all__ = ["plot_curves", "plot_pro", "plot_roc", "plot_score_hist"]


def _save(fig: object, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def _figure(size: tuple[float, float] = (4.5, 4.0)):
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)               # Agg explicitly: no pyplot state, no display, thread-safe enough
    return fig, fig.add_subplot(1, 1, 1)


def plot_roc(fpr: object, tpr: object, path: str | os.PathLike, title: str = "ROC",
             auc: float | None = None, point: tuple[float, float] | None = None) -> str:
    """Write the ROC curve (``fpr``, ``tpr``) to ``path`` (PNG); ``point`` = (FPR, TPR) marks the operating
    point (the chosen threshold). Returns the path."""
    fig, ax = _figure()
    label = f"AUROC = {auc:.4f}" if auc is not None else None
    ax.plot(np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64), lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="crimson", ms=7,
                label=f"threshold: FPR {point[0]:.3f}, TPR {point[1]:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    if label or point is not None:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pro(fpr: object, pro: object, path: str | os.PathLike, fpr_limit: float = 0.3, title: str = "PRO",
             aupro: float | None = None) -> str:
    """Write the PRO curve to ``path`` (PNG), the x axis ending at ``fpr_limit``; returns the path."""
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(pro, dtype=np.float64)
    if x.size and x[-1] > fpr_limit:      # end the drawn curve at the limit, as the area does
        k = int(np.searchsorted(x, fpr_limit, side="right"))
        if 0 < k < x.size and x[k - 1] != fpr_limit:
            y_at = y[k - 1] + (y[k] - y[k - 1]) * (fpr_limit - x[k - 1]) / (x[k] - x[k - 1])
            x, y = np.r_[x[:k], fpr_limit], np.r_[y[:k], y_at]
        else:
            x, y = x[:k], y[:k]
    fig, ax = _figure()
    label = f"AUPRO@{fpr_limit:g} = {aupro:.4f}" if aupro is not None else None
    ax.plot(x, y, lw=1.5, label=label)
    ax.set(xlim=(0, fpr_limit), ylim=(0, 1.01), xlabel="false positive rate", ylabel="per-region overlap",
           title=title)
    if label:
        ax.legend(loc="lower right")
    return _save(fig, path)


def plot_score_hist(normal: object, anomalous: object, path: str | os.PathLike, threshold: float | None = None,
                    title: str = "image scores", bins: int = 40) -> str:
    """Write overlaid histograms of the ``normal`` and ``anomalous`` image scores, with a vertical line at
    ``threshold``, to ``path`` (PNG); returns the path."""
    a = np.asarray(normal, dtype=np.float64).ravel()
    b = np.asarray(anomalous, dtype=np.float64).ravel()
    both = np.concatenate([a, b, [] if threshold is None else [float(threshold)]])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, ax = _figure((5.5, 3.4))
    for values, name, colour in ((a, "normal", "tab:blue"), (b, "anomalous", "tab:orange")):
        if values.size:
            ax.hist(values, bins=edges, alpha=0.55, color=colour, label=f"{name} ({values.size})")
    if threshold is not None:
        ax.axvline(float(threshold), color="crimson", lw=1.5, ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="image score (higher = more anomalous)", ylabel="images", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


CURVE_EXCLUDED = ("lr", "images_per_s")   # history keys that are settings and speed, not curves to judge


def plot_curves(rows: Sequence[tuple], path: str | os.PathLike, title: str = "training") -> str | None:
    """Write the training curves of a history (``reconad.components.HistoryRow`` tuples) to ``path`` (PNG): one
    panel per loss term against the epoch, one line per stage (the ``train`` rows, else the per-epoch ones),
    and a panel of the validation AUROC where there is one. Returns the path, or None for a history with
    nothing to draw."""
    scope = "train" if any(r.scope == "train" for r in rows) else "epoch"
    terms = [r for r in rows if r.scope == scope and r.key not in CURVE_EXCLUDED and not r.key.startswith("lr_")]
    keys = list(dict.fromkeys(r.key for r in terms))
    val = [r for r in rows if r.scope == "val" and r.key == "auroc"]
    panels = keys + (["validation AUROC"] if val else [])
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    stages = list(dict.fromkeys(r.stage for r in rows))
    colours = {st: f"C{i}" for i, st in enumerate(stages)}
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, i + 1)
        series = val if panel == "validation AUROC" else [r for r in terms if r.key == panel]
        for st in stages:
            pts = [(r.epoch, r.value) for r in series if r.stage == st]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o" if len(series) < 20 else None, ms=3, lw=1.2, color=colours[st], label=st)
        ax.set(xlabel="epoch", title=panel)
        if len(stages) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
