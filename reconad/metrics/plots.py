"""ROC and PRO curves as PNG files (matplotlib's Agg backend; no display needed).

Each file is written to a temporary file in the target folder and moved into place with ``os.replace``,
so a reader never sees a half-written PNG.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["plot_pro", "plot_roc"]


def _save(fig: object, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _figure():
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(4.5, 4.0))
    FigureCanvasAgg(fig)               # Agg explicitly: no pyplot state, no display, thread-safe enough
    return fig, fig.add_subplot(1, 1, 1)


def plot_roc(fpr: object, tpr: object, path: str | os.PathLike, title: str = "ROC",
             auc: float | None = None) -> str:
    """Write the ROC curve (``fpr``, ``tpr``) to ``path`` (PNG); returns the path."""
    fig, ax = _figure()
    label = f"AUROC = {auc:.4f}" if auc is not None else None
    ax.plot(np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64), lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    if label:
        ax.legend(loc="lower right")
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
