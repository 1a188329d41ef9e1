"""PNG plots are written atomically (no temporary file left behind)."""
from __future__ import annotations

import os

import numpy as np

import reconad.metrics as M


def test_plots_write_png(tmp_path, rng):
    s = rng.random(50)
    y = rng.random(50) < 0.5
    y[:2] = [True, False]
    fpr, tpr, _ = M.roc_curve(s, y)
    p = M.plot_roc(fpr, tpr, tmp_path / "sub" / "roc.png", title="roc", auc=M.auroc(s, y))
    fpr_p = np.linspace(0, 1, 20)
    q = M.plot_pro(fpr_p, np.sqrt(fpr_p), tmp_path / "pro.png", fpr_limit=0.3, aupro=0.5)
    for path in (p, q):
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["pro.png", "sub"]
    assert os.listdir(tmp_path / "sub") == ["roc.png"]
