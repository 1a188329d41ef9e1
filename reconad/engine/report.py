"""What a run leaves for a person: scores.csv, metrics.json, a grid of the most and least anomalous test
images (input / reconstruction / heatmap / ground truth), the ROC (and PRO) curves, and report.html."""
from __future__ import annotations

import csv
import html
import json
import os
from typing import Any, Sequence

import numpy as np
import torch

from .. import metrics as M
from ..io import atomic_path, atomic_write, write_json, write_text
from ..model import ReconModel
from .evaluate import ScoreSet

__all__ = ["heat_overlay", "write_report", "write_scores_csv"]


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3)."""
    img = np.clip(image, 0, 1)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    return img.transpose(1, 2, 0)


def heat_overlay(image: np.ndarray, heat: np.ndarray, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(H, W)`` anomaly map (scaled by ``vmax``, the held-out normal pixel threshold) over ``image``."""
    from matplotlib import colormaps

    norm = np.clip(heat / max(vmax, 1e-12) / 2.0, 0, 1)  # the threshold sits mid-scale
    colour = colormaps["jet"](norm)[..., :3]
    return (1 - alpha) * _rgb(image) + alpha * colour


def write_scores_csv(path: str, scores: ScoreSet, threshold: float | None) -> None:
    """``path,score,label`` then ``defect``, ``predicted`` and one ``score_<name>`` column per extra scorer."""
    extra = scores.names[1:]
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "score", "label", "defect", "predicted", *[f"score_{n}" for n in extra]])
        for i, p in enumerate(scores.paths):
            s = float(scores.primary[i])
            pred = "" if threshold is None else int(s > threshold)
            label = "" if scores.labels.size == 0 or scores.labels[i] < 0 else int(scores.labels[i])
            w.writerow([p, f"{s:.8g}", label, scores.defects[i] if scores.defects else "", pred,
                        *[f"{float(scores.image[n][i]):.8g}" for n in extra]])


@torch.no_grad()
def _grid(path: str, model: ReconModel, dataset: Any, scores: ScoreSet, picks: Sequence[int], vmax: float,
          device: torch.device, with_masks: bool) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    was = model.training
    model.eval()
    items = [dataset[i] for i in picks]
    x = torch.stack([it["image"] for it in items]).to(device)
    out = model(x)
    recon = out["recon"].float().clamp(0, 1).cpu().numpy()
    heat = next((s.pixel for s in model.score(out).values() if s.pixel is not None), None)
    heat = heat.float().cpu().numpy() if heat is not None else np.zeros((len(items), *x.shape[-2:]))
    model.train(was)
    cols = ["input", "reconstruction", "anomaly map"] + (["ground truth"] if with_masks else [])
    fig, axes = plt.subplots(len(items), len(cols), figsize=(2.2 * len(cols), 2.2 * len(items)), squeeze=False)
    for r, (i, it) in enumerate(zip(picks, items)):
        img = it["image"].numpy()
        panels = [_rgb(img), _rgb(recon[r]), heat_overlay(img, heat[r], vmax)]
        if with_masks:
            panels.append(it["mask"][0].numpy())
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
        label = {0: "normal", 1: "anomalous"}.get(int(scores.labels[i]), "?")
        axes[r][0].set_ylabel(f"{scores.primary[i]:.4g}\n{label}\n{os.path.basename(str(it['path']))[:18]}",
                              fontsize=7)
    fig.suptitle("most anomalous (top) and least anomalous (bottom) test images", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def write_report(out_dir: str, *, model: ReconModel, dataset: Any, scores: ScoreSet, metrics: dict[str, Any],
                 calibration: dict[str, Any], config: dict[str, Any], device: torch.device,
                 n_images: int = 6) -> dict[str, str]:
    """Write every report file into ``out_dir``; returns {what: path}."""
    files = {"metrics": os.path.join(out_dir, "metrics.json"), "scores": os.path.join(out_dir, "scores.csv")}
    write_json(files["metrics"], metrics)
    write_scores_csv(files["scores"], scores, calibration.get("threshold"))
    two_classes = 0 < scores.labels.sum() < scores.labels.size
    if two_classes:
        fpr, tpr, _ = M.roc_curve(scores.primary, scores.labels)
        files["roc"] = os.path.join(out_dir, "roc.png")
        M.plot_roc(fpr, tpr, files["roc"], title=f"ROC, image AUROC {metrics['image_auroc']:.4f}")
    if metrics.get("aupro") is not None:
        fpr, pro = M.pro_curve(scores.pixel, scores.masks)
        files["pro"] = os.path.join(out_dir, "pro.png")
        M.plot_pro(fpr, pro, files["pro"], fpr_limit=metrics["aupro_fpr_limit"],
                   title=f"PRO, AUPRO@{metrics['aupro_fpr_limit']} {metrics['aupro']:.4f}")
    order = np.argsort(-scores.primary, kind="stable")
    k = max(1, min(n_images // 2, len(order) // 2 or 1))
    picks = [int(i) for i in order[:k]] + [int(i) for i in order[::-1][:k]]
    if picks:
        files["grid"] = os.path.join(out_dir, "grid.png")
        vmax = calibration.get("pixel_threshold")
        if not vmax and scores.pixel is not None:
            vmax = float(np.quantile(scores.pixel, 0.99))
        _grid(files["grid"], model, dataset, scores, picks, vmax or 1.0, device,
              with_masks=scores.masks is not None and bool(scores.masks.any()))
    files["report"] = os.path.join(out_dir, "report.html")
    write_text(files["report"], _html(metrics, calibration, config, files, out_dir))
    return files


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("n/a" if v is None else html.escape(str(v)))


def _html(metrics: dict[str, Any], calibration: dict[str, Any], config: dict[str, Any], files: dict[str, str],
          out_dir: str) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
                   for k, v in metrics.items() if not isinstance(v, dict))
    scorer_rows = "".join(
        f"<tr><th>{html.escape(n)}</th>" + "".join(f"<td>{_fmt(e.get(c))}</td>" for c in ("image_auroc", "threshold",
                                                                                       "tpr", "tnr", "f1"))
        + "</tr>" for n, e in metrics.get("scorers", {}).items())
    imgs = "".join(f'<figure><img src="{os.path.basename(files[k])}" alt="{k}"><figcaption>{k}</figcaption></figure>'
                   for k in ("grid", "roc", "pro") if k in files)
    import yaml

    cfg_text = html.escape(yaml.safe_dump(config, sort_keys=False))
    thr = html.escape(json.dumps({k: v for k, v in calibration.items() if k != "thresholds"}, indent=1))
    sel = metrics.get("selection")
    selection = "" if not sel or not sel.get("best") else (
        "<h2>Model selection (on the labelled validation split, never the test)</h2><p>Kept epoch "
        f"{sel['best']['epoch']} of {sel['history'][-1]['epoch']}: validation AUROC "
        f"{_fmt(sel['best']['validation_auroc'])} ({html.escape(sel['best']['score'])}); every epoch scored in "
        "metrics.json (<code>selection.history</code>).</p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>reconad report: {html.escape(str(config.get('name')))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}figure{{margin:1em 0}}</style>
</head><body>
<h1>reconad report: {html.escape(str(config.get('name')))}</h1>
<p>Dataset <b>{html.escape(str(config['data'].get('name')))}</b>; scores per image in
<a href="scores.csv">scores.csv</a>; all metrics in <a href="metrics.json">metrics.json</a>.</p>
<h2>Metrics</h2><table>{rows}</table>
<h2>Scorers</h2><table><tr><th>scorer</th><th>image AUROC</th><th>threshold</th><th>TPR</th><th>TNR</th>
<th>F1</th></tr>{scorer_rows}</table>
<h2>Threshold (chosen on held-out normal images only)</h2><pre>{thr}</pre>{selection}
<h2>Pictures</h2>{imgs}
<h2>Config</h2><pre>{cfg_text}</pre>
</body></html>
"""
