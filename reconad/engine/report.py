"""What a run leaves for a person: scores.csv, metrics.json, report.html and its pictures.

report.html reads on its own (no external resources): run facts, every metric with a one-line meaning (and a
note where it is only a proxy), the threshold as a sentence, a confusion matrix and a per-defect-type table
at that threshold, a histogram of normal vs anomalous scores (hist.png), the ROC with the operating point
(roc.png), the PRO curve (pro.png), the training curves from history.csv (curves.png), the most and least anomalous test images (grid.png) beside the false
positives and false negatives nearest the threshold (grid_errors.png), each row with its score and decision
and the anomaly map on a colour bar with the pixel threshold outlined, a sortable table of the flagged images
and the files skipped as unreadable. ``rebuild_report`` writes the page again from a run folder's files."""
from __future__ import annotations

import csv
import datetime as _dt
import html
import os
import subprocess
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__
from .. import metrics as M
from .._imagefiles import to_rgb, heat_overlay, write_score_rows
from ..data.base import NORMAL
from ..io import atomic_path, atomic_write, write_json, write_text
from ..metrics.plots import plot_curves, plot_score_hist
from ..model import ReconModel
from .evaluate import ScoreSet
from .history import HISTORY, read_history
from .runtime import flush_denormals

__all__ = ["METRIC_MEANINGS", "heat_overlay", "per_defect", "read_scores_csv", "rebuild_report", "run_facts",
           "threshold_check", "threshold_sentence", "write_curves", "write_report", "write_scores_csv"]


def write_scores_csv(path: str, scores: ScoreSet, threshold: float | None) -> None:
    """``path,score,label`` then ``defect``, ``predicted`` and one ``score_<name>`` column per extra scorer."""
    predicted = None if threshold is None else scores.primary > threshold
    write_score_rows(path, scores.paths, {n: scores.image[n] for n in scores.names}, predicted, scores.labels,
                     scores.defects)


# One line per metric, in plain words, shown next to its value.
METRIC_MEANINGS = {
    "n_test": "test images scored",
    "n_anomalous": "of which anomalous (by the dataset's labels)",
    "image_auroc": "the chance that a random anomalous test image scores higher than a random normal one "
                   "(1 = perfect ranking, 0.5 = coin toss); does not depend on the threshold",
    "threshold": "the image score above which an image is flagged anomalous (see Threshold)",
    "image_tpr": "share of anomalous test images flagged at the threshold (recall, true positive rate)",
    "image_tnr": "share of normal test images not flagged at the threshold (true negative rate)",
    "image_f1": "balance of precision (flagged images that are anomalous) and recall at the threshold "
                "(harmonic mean; 1 = every anomaly flagged and nothing else)",
    "pixel_auroc": "the image AUROC per pixel: the chance that a defect pixel (ground-truth mask) gets a "
                   "higher anomaly-map value than a normal pixel",
    "aupro": "how much of each defect region the anomaly map covers, averaged over regions so that a small "
             "defect counts as much as a large one, while at most {limit:.0%} of normal pixels are flagged; "
             "normalised to 0..1 (1 = every region fully covered)",
    "aupro_fpr_limit": "the false-positive rate of normal pixels up to which AUPRO is measured",
}

# Metrics that judge single images; on a video run they are computed over its units (patches or clips).
_IMAGE_METRICS = ("image_auroc", "image_tpr", "image_tnr", "image_f1")


def _decide(scores: ScoreSet, threshold: float | None) -> np.ndarray:
    """The decision per image: flagged anomalous when the primary score is above the threshold."""
    if threshold is None:
        return np.zeros(scores.primary.shape, dtype=bool)
    return scores.primary > threshold


def _picks(scores: ScoreSet, flagged: np.ndarray, threshold: float | None, k: int
           ) -> dict[str, list[int]]:
    """The images the report shows: the ``k`` most and least anomalous, and the ``k`` false positives and
    false negatives nearest the threshold (the ones a reviewer tuning it looks at first)."""
    s = scores.primary
    order = np.argsort(-s, kind="stable")
    n = max(1, min(k, len(order) // 2 or 1))
    out = {"most anomalous": [int(i) for i in order[:n]],
           "least anomalous": [int(i) for i in order[::-1][:n]]}
    if threshold is None or scores.labels.size != s.size:
        return out
    fp = np.flatnonzero(flagged & (scores.labels == 0))
    fn = np.flatnonzero(~flagged & (scores.labels == 1))
    out["false positive, nearest the threshold"] = [int(i) for i in fp[np.argsort(s[fp], kind="stable")][:k]]
    out["false negative, nearest the threshold"] = [int(i) for i in fn[np.argsort(-s[fn], kind="stable")][:k]]
    return out


def _short(path: str, parts: int = 2) -> str:
    """The last ``parts`` components of a path (``defect/file.png``): enough to tell images apart in a caption."""
    return "/".join(str(path).replace("\\", "/").split("/")[-parts:])


@torch.no_grad()
def _grid(path: str, model: ReconModel, dataset: Any, scores: ScoreSet, groups: dict[str, list[int]],
          flagged: np.ndarray, vmax: float, pixel_threshold: float | None, device: torch.device,
          with_masks: bool, title: str) -> None:
    """Rows of input / reconstruction / anomaly map (on a colour bar whose scale has the pixel threshold at
    mid-height, outlined on the map) / ground truth, each row captioned with its group, score and decision."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows = [(g, i) for g, idx in groups.items() for i in idx]
    was = model.training
    model.eval()
    items = [dataset[i] for _, i in rows]
    x = torch.stack([it["image"] for it in items]).to(device)
    with flush_denormals(device):
        out = model(x)
        scored = model.score(out)
    recon = out["recon"].float().clamp(0, 1).cpu().numpy()
    heat = next((s.pixel for s in scored.values() if s.pixel is not None), None)
    heat = heat.float().cpu().numpy() if heat is not None else np.zeros((len(items), *x.shape[-2:]))
    model.train(was)
    cols = ["input", "reconstruction", "anomaly map"] + (["ground truth"] if with_masks else [])
    fig = Figure(figsize=(2.0 * len(cols) + 1.2, 2.25 * len(rows) + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    scale = ScalarMappable(Normalize(0.0, 2.0 * vmax), colormaps["jet"])   # the threshold sits mid-scale
    for r, (sub, (group, i), it) in enumerate(zip(fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows,
                                                  items)):
        label = {0: "normal", 1: "anomalous"}.get(int(scores.labels[i]), "?")
        decision = "FLAGGED" if flagged[i] else "not flagged"
        sub.suptitle(f"{group}: score {scores.primary[i]:.4g}, {decision} ({label}, "
                     f"{_short(str(it['path']))[-40:]})", fontsize=8, x=0.02, ha="left")
        axes = sub.subplots(1, len(cols))
        img = it["image"].numpy()
        panels = [to_rgb(img), to_rgb(recon[r]), heat_overlay(img, heat[r], vmax)]
        if with_masks:
            panels.append(it["mask"][0].numpy())
        for c, panel in enumerate(panels):
            axes[c].imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            axes[c].set_xticks([])
            axes[c].set_yticks([])
            if r == 0:
                axes[c].set_title(cols[c], fontsize=8)
        over = heat[r] > pixel_threshold if pixel_threshold is not None else None
        if over is not None and over.any() and not over.all():   # the pixel threshold as an outline
            axes[2].contour(over.astype(np.float32), levels=[0.5], colors="white", linewidths=0.9)
        bar = sub.colorbar(scale, ax=axes[2], shrink=0.9, pad=0.03, fraction=0.08)
        bar.set_ticks([0.0, vmax, 2.0 * vmax],
                      labels=["0", f"{'threshold' if pixel_threshold is not None else 'mid'} {vmax:.3g}",
                              f"{2 * vmax:.3g}"])
        bar.ax.tick_params(labelsize=6)
        bar.ax.axhline(vmax, color="white", lw=2)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def _git_commit() -> str | None:
    """The commit of the reconad source tree when it is a git checkout (``+dirty`` with local changes)."""
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(os.path.dirname(here))          # the folder holding the reconad package
    try:
        top = subprocess.run(["git", "-C", here, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=5)
        # an installed copy inside some other repository (a venv in a project) must not report that one's commit
        if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(checkout):
            return None
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_facts(config: dict[str, Any], device: torch.device, train_seconds: float | None = None
              ) -> dict[str, Any]:
    """Date, versions, commit, device and training time of a report."""
    facts: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "reconad": __version__, "commit": _git_commit(), "torch": torch.__version__, "device": str(device),
        "run": config.get("name"), "dataset": (config.get("data") or {}).get("name"),
    }
    if train_seconds is not None:
        facts["training time"] = _duration(train_seconds)
    return facts


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else (f"{s // 60} min {s % 60} s" if s >= 60
                                                                     else f"{seconds:.1f} s")


def per_defect(scores: ScoreSet, flagged: np.ndarray) -> list[dict[str, Any]]:
    """Per defect type (the dataset's ``defect``: ``test/<defect>/``): images, flagged, share flagged and
    mean score; normal images first (for them "flagged" are false alarms)."""
    names = scores.defects or ["?"] * scores.primary.size
    kinds = sorted(set(names), key=lambda d: (d != NORMAL, d))
    rows = []
    for d in kinds:
        idx = np.array([j for j, n in enumerate(names) if n == d], dtype=np.int64)
        rows.append({"defect": d, "count": int(idx.size), "flagged": int(flagged[idx].sum()),
                     "flagged_rate": float(flagged[idx].mean()), "mean_score": float(scores.primary[idx].mean())})
    return rows


def write_report(out_dir: str, *, model: ReconModel, dataset: Any, scores: ScoreSet, metrics: dict[str, Any],
                 calibration: dict[str, Any], config: dict[str, Any], device: torch.device,
                 n_images: int = 6, skipped: Sequence[str] = (), train_seconds: float | None = None
                 ) -> dict[str, str]:
    """Write every report file into ``out_dir``; returns {what: path}. ``skipped``: files left out as
    unreadable (``--skip-bad``), listed in the report and in metrics.json; ``train_seconds``: the training's
    wall time, for the run facts."""
    if skipped:
        metrics["skipped"] = list(skipped)
    metrics["run"] = facts = run_facts(config, device, train_seconds)   # kept for rebuild_report
    files = {"metrics": os.path.join(out_dir, "metrics.json"), "scores": os.path.join(out_dir, "scores.csv")}
    write_json(files["metrics"], metrics)
    threshold = calibration.get("threshold")
    write_scores_csv(files["scores"], scores, threshold)
    flagged = _decide(scores, threshold)
    two_classes = 0 < scores.labels.sum() < scores.labels.size
    if two_classes:
        fpr, tpr, _ = M.roc_curve(scores.primary, scores.labels)
        point = None
        if threshold is not None:
            c = M.confusion(flagged, scores.labels)
            point = (c.fp / max(c.fp + c.tn, 1), c.tp / max(c.tp + c.fn, 1))
        files["roc"] = os.path.join(out_dir, "roc.png")
        M.plot_roc(fpr, tpr, files["roc"], title=f"ROC, image AUROC {metrics['image_auroc']:.4f}", point=point)
    if scores.primary.size and scores.labels.size == scores.primary.size:
        files["hist"] = os.path.join(out_dir, "hist.png")
        plot_score_hist(scores.primary[scores.labels == 0], scores.primary[scores.labels == 1], files["hist"],
                        threshold, title="test image scores: normal vs anomalous")
    if metrics.get("aupro") is not None:
        fpr, pro = M.pro_curve(scores.pixel, scores.masks)
        files["pro"] = os.path.join(out_dir, "pro.png")
        M.plot_pro(fpr, pro, files["pro"], fpr_limit=metrics["aupro_fpr_limit"],
                   title=f"PRO, AUPRO@{metrics['aupro_fpr_limit']} {metrics['aupro']:.4f}")
    groups = _picks(scores, flagged, threshold, max(1, n_images // 2)) if scores.primary.size else {}
    if groups:
        pixel_threshold = calibration.get("pixel_threshold")
        vmax = pixel_threshold
        if not vmax and scores.pixel is not None:
            vmax = float(np.quantile(scores.pixel, 0.99))
        with_masks = scores.masks is not None and bool(scores.masks.any())
        files["grid"] = os.path.join(out_dir, "grid.png")
        _grid(files["grid"], model, dataset, scores, {g: groups[g] for g in ("most anomalous", "least anomalous")},
              flagged, vmax or 1.0, pixel_threshold, device, with_masks,
              "most anomalous (top) and least anomalous (bottom) test images")
        errors = {g: v for g, v in groups.items() if g.startswith("false") and v}
        if errors:
            files["grid_errors"] = os.path.join(out_dir, "grid_errors.png")
            _grid(files["grid_errors"], model, dataset, scores, errors, flagged, vmax or 1.0, pixel_threshold,
                  device, with_masks, "mistakes nearest the threshold")
    files.update(write_curves(out_dir))
    files["report"] = os.path.join(out_dir, "report.html")
    page = _html(metrics, calibration, config, files, scores=scores, flagged=flagged, skipped=list(skipped),
                 facts=facts, groups=groups)
    write_text(files["report"], page)
    return files


def write_curves(out_dir: str) -> dict[str, str]:
    """curves.png from the run folder's history.csv: ``{"curves": path}``, or {} without a history to draw."""
    path = os.path.join(out_dir, HISTORY)
    if not os.path.isfile(path):
        return {}
    curves = plot_curves(read_history(path), os.path.join(out_dir, "curves.png"))
    return {"curves": curves} if curves else {}


def read_scores_csv(path: str, names: Sequence[str]) -> ScoreSet:
    """The scores ``write_scores_csv`` wrote (``names``: the scorers, the primary first), without pixel maps."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = ["path", "score", "label", "defect", *[f"score_{n}" for n in names[1:]]]
    missing = [c for c in need if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing the column(s) {', '.join(missing)}; expected {','.join(need)}")
    image = {names[0]: np.array([float(r["score"]) for r in rows], dtype=np.float64)}
    image.update({n: np.array([float(r[f"score_{n}"]) for r in rows], dtype=np.float64) for n in names[1:]})
    labelled = any(r["label"] != "" for r in rows)
    labels = np.array([int(r["label"]) if r["label"] != "" else -1 for r in rows] if labelled else [], dtype=np.int64)
    return ScoreSet(list(names), image, None, labels, None, [r["path"] for r in rows], [r["defect"] for r in rows])


def rebuild_report(run_dir: str) -> dict[str, str]:
    """report.html (and curves.png) again from a tested run folder's files: config.yaml, metrics.json, scores.csv,
    history.csv, the calibration in checkpoint.pt and the pictures already there; nothing is trained or scored.
    Returns {what: path}."""
    import json

    import yaml

    from .checkpoint import load_checkpoint
    from .runtime import RunError

    need = ["config.yaml", "metrics.json", "scores.csv", "checkpoint.pt"]
    missing = [f for f in need if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise RunError(f"{run_dir!r} lacks {', '.join(missing)}; expected a tested run folder "
                       f"(the --out of `reconad run`, or `reconad test RUN` after `reconad train`)")
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as fh:
        metrics = json.load(fh)
    calibration = load_checkpoint(os.path.join(run_dir, "checkpoint.pt")).get("calibration") or {}
    names = list(metrics.get("scorers") or {}) or ["score"]
    try:
        scores = read_scores_csv(os.path.join(run_dir, "scores.csv"), names)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    files = {k: os.path.join(run_dir, f"{k}.png") for k in ("hist", "roc", "pro", "grid", "grid_errors")
             if os.path.isfile(os.path.join(run_dir, f"{k}.png"))}
    files.update(write_curves(run_dir))
    threshold = calibration.get("threshold")
    flagged = _decide(scores, threshold)
    n_images = int((config.get("test") or {}).get("report_images", 6))
    groups = _picks(scores, flagged, threshold, max(1, n_images // 2)) if scores.primary.size else {}
    facts = metrics.get("run") or {"run": config.get("name"), "dataset": (config.get("data") or {}).get("name")}
    files["report"] = os.path.join(run_dir, "report.html")
    write_text(files["report"], _html(metrics, calibration, config, files, scores=scores, flagged=flagged,
                                      skipped=list(metrics.get("skipped", [])), facts=facts, groups=groups))
    return files


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("n/a" if v is None else html.escape(str(v)))


def _proxy_note(config: dict[str, Any]) -> str | None:
    """Why a video run's image metrics are a proxy, or None for other datasets."""
    data = config.get("data") or {}
    if data.get("name") != "video":
        return None
    unit = data.get("unit") or "patches"
    return (f"proxy: measured over the {unit} of the test frames, each {unit[:-1]} labelled with its frame's "
            f"label, so every {unit[:-1]} of an anomalous frame counts as anomalous although most show normal "
            f"content; the frame-level AUROC and EER come from <code>reconad video RUN FRAMES --labels "
            f"LABELS</code> (video_metrics.json)")


def threshold_sentence(calibration: dict[str, Any], score_name: str) -> str:
    """The threshold rule in words (HTML)."""
    t = calibration.get("threshold")
    if t is None:
        return "<p>No threshold was chosen for this run: images are ranked by score only.</p>"
    name = html.escape(score_name)
    if score_name in calibration.get("fixed", []):
        text = (f"An image is flagged anomalous when its <code>{name}</code> score is above <b>{t:.4g}</b>. "
                f"This value is fixed by the scorer itself, the method's own rule (its paper's gamma on scores "
                f"min-max normalised over the scored set; see the plugin's README), not chosen on held-out "
                f"images; the scorer's options give the label-free held-out threshold instead.")
    elif calibration.get("n_validation") is not None:
        text = (f"An image is flagged anomalous when its <code>{name}</code> score is above <b>{t:.4g}</b>: the "
                f"threshold of the best F1 on the dataset's labelled validation split "
                f"({calibration['n_validation']} images, never trained on, not the test set). It depends on the "
                f"anomalies that split holds; no false-alarm rate is promised.")
    elif calibration.get("alpha") is not None:
        a, n = calibration["alpha"], calibration.get("n_holdout")
        text = (f"An image is flagged anomalous when its <code>{name}</code> score is above <b>{t:.4g}</b>: the "
                f"split-conformal threshold on the scores of {n} held-out normal images, never trained on; the "
                f"test labels are never used. On new normal images from the same source, at most "
                f"{100 * a:.2g}% are flagged (false alarms): a guarantee, not an estimate.")
    else:
        q, n = calibration.get("quantile"), calibration.get("n_holdout")
        text = (f"An image is flagged anomalous when its <code>{name}</code> score is above <b>{t:.4g}</b>: the "
                f"{q:g} quantile of the scores of {n} held-out normal images, never trained on; the test "
                f"labels are never used. On normal images like them, expect about {100 * (1 - q):.2g}% to be "
                f"flagged (false alarms).")
    p, area = calibration.get("pixel_threshold"), calibration.get("pixel_rule", {}).get("min_area")
    if p is not None and area is not None:
        text += (f" A pixel counts as anomalous when its anomaly-map value is above <b>{p:.4g}</b> in a connected "
                 f"region of more than {area} such pixels: the lowest value at which no held-out normal image "
                 f"has such a region (the white outline on the maps below marks every pixel above it).")
    elif p is not None:
        text += (f" A pixel counts as anomalous when its anomaly-map value is above <b>{p:.4g}</b>, a quantile "
                 f"of the held-out normal images' pixel values: the white outline on the maps below.")
    return f"<p>{text}</p>"


def threshold_check(scores: ScoreSet, metrics: dict[str, Any]) -> str:
    """A warning (HTML) when the threshold, not the ranking, is what fails: F1 at the threshold under half the
    best F1 over all thresholds (that best one picked with the test labels, shown only for comparison), as when
    scores are rescaled per scored set (min-max over each set) so a threshold chosen on one set does not carry
    to another. Empty otherwise."""
    f1 = metrics.get("image_f1")
    labels = scores.labels
    if f1 is None or not 0 < labels.sum() < labels.size:
        return ""
    best = M.f1_max(scores.primary, labels)
    if f1 >= 0.5 * best:
        return ""
    return (f'<p class="note"><b>The threshold does not suit this test set:</b> F1 at the threshold is {f1:.3f}, '
            f"while the best threshold for this test set would reach {best:.3f} (found with the test labels, "
            f"for comparison only). The ranking is fine (image AUROC {_fmt(metrics.get('image_auroc'))}); the "
            f"threshold is not. Typical causes: scores rescaled over each scored set (min-max, as OLED's and "
            f"ODDObjects' gamma rule do), so a threshold taken on one set does not carry to another, or held-out "
            f"normal images unlike the test's. Judge this run by its AUROC, or choose a threshold rule that "
            f"carries (see the scorer's README).</p>")


_SORT_JS = """<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], asc = th.dataset.asc !== "1";
      th.dataset.asc = asc ? "1" : "0";
      Array.from(body.rows).sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
        var r = (!isNaN(parseFloat(x)) && !isNaN(parseFloat(y))) ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? r : -r;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>"""

_CSS = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}td.num{text-align:right}img{max-width:100%}figure{margin:1em 0}.row{display:flex;gap:1em;
flex-wrap:wrap;align-items:flex-start}.row figure{flex:1 1 340px}.note{color:#8a4b00}.meaning{color:#555;
font-size:90%}table.sortable th{cursor:pointer;background:#f3f3f3}code{background:#f4f4f4}"""


def _html(metrics: dict[str, Any], calibration: dict[str, Any], config: dict[str, Any], files: dict[str, str],
          *, scores: ScoreSet, flagged: np.ndarray, skipped: list[str], facts: dict[str, Any],
          groups: dict[str, list[int]], max_flagged_rows: int = 1000) -> str:
    import yaml

    esc = html.escape
    proxy = _proxy_note(config)
    limit = metrics.get("aupro_fpr_limit") or 0.3
    rows = []
    for k, v in metrics.items():
        if isinstance(v, (dict, list)):
            continue
        meaning = METRIC_MEANINGS.get(k, "").format(limit=limit)
        note = f'<br><span class="note">{proxy}</span>' if proxy and k in _IMAGE_METRICS else ""
        rows.append(f'<tr><th>{esc(k)}</th><td class="num">{_fmt(v)}</td><td class="meaning">{esc(meaning)}'
                    f"{note}</td></tr>")
    scorer_rows = "".join(
        f"<tr><th>{esc(n)}</th>" + "".join(f'<td class="num">{_fmt(e.get(c))}</td>'
                                            for c in ("image_auroc", "threshold", "tpr", "tnr", "f1"))
        + "</tr>" for n, e in metrics.get("scorers", {}).items())
    evaluator_html = "".join(
        f"<h3>{esc(n)}</h3><table>" + "".join(f'<tr><th>{esc(k)}</th><td class="num">{_fmt(v)}</td></tr>'
                                              for k, v in values.items()) + "</table>"
        for n, values in (metrics.get("evaluators") or {}).items())
    if evaluator_html:
        evaluator_html = ("<h2>Evaluators</h2><p>The paper's own measurements this config asks for "
                          "(<code>test.evaluators</code>; metrics.json <code>evaluators</code>).</p>" + evaluator_html)
    labelled = scores.labels.size == scores.primary.size and scores.primary.size > 0
    confusion = defects = ""
    if labelled and calibration.get("threshold") is not None:
        c = M.confusion(flagged, scores.labels)
        confusion = ("<h3>Confusion matrix at the threshold</h3><table><tr><th></th><th>flagged</th>"
                     "<th>not flagged</th></tr>"
                     f'<tr><th>anomalous</th><td class="num">{c.tp} (caught)</td><td class="num">{c.fn} '
                     f"(missed)</td></tr>"
                     f'<tr><th>normal</th><td class="num">{c.fp} (false alarm)</td><td class="num">{c.tn}'
                     "</td></tr></table>")
        defects = ("<h3>Per defect type</h3><table><tr><th>defect type</th><th>images</th><th>flagged</th>"
                   "<th>flagged %</th><th>mean score</th></tr>" + "".join(
                       f"<tr><th>{esc(r['defect'])}</th><td class='num'>{r['count']}</td><td class='num'>"
                       f"{r['flagged']}</td><td class='num'>{100 * r['flagged_rate']:.1f}"
                       f"{' (false alarms)' if r['defect'] == NORMAL else ''}</td>"
                       f"<td class='num'>{r['mean_score']:.4g}</td></tr>" for r in per_defect(scores, flagged))
                   + "</table>")

    def fig(key: str, caption: str) -> str:
        return (f'<figure><img src="{esc(os.path.basename(files[key]))}" alt="{esc(key)}">'
                f"<figcaption>{caption}</figcaption></figure>") if key in files else ""

    missing = [g for g in ("false positive, nearest the threshold", "false negative, nearest the threshold")
               if g in groups and not groups[g]]
    none_note = "".join(f"<p>No {esc(g.split(',')[0])}s at this threshold.</p>" for g in missing)
    pictures = (
        '<div class="row">' + fig("hist", "Scores of the normal and anomalous test images; the dashed line is "
                                          "the threshold.")
        + fig("roc", "ROC over all thresholds; the dot is this run's threshold.")
        + fig("pro", "PRO: the share of each defect region covered against the false-positive rate of normal "
                     "pixels, up to the AUPRO limit.") + "</div>"
        + '<div class="row">' + fig("grid", "Each row: the group, the score, the decision at the threshold, the "
                                            "label and the file; each anomaly map has its colour bar, the white outline is the "
                                            "pixel threshold.")
        + fig("grid_errors", "False positives and false negatives nearest the threshold: the images that "
                             "decide where to move it.") + "</div>" + none_note)
    order = [int(i) for i in np.argsort(-scores.primary, kind="stable") if flagged[i]]
    flagged_rows = "".join(
        f"<tr><td class='num' data-v='{r}'>{r + 1}</td><td>{esc(str(scores.paths[i]))}</td>"
        f"<td>{esc(scores.defects[i]) if scores.defects else ''}</td>"
        f"<td>{ {0: 'normal', 1: 'anomalous'}.get(int(scores.labels[i]), '?') if labelled else '?'}</td>"
        f"<td class='num' data-v='{float(scores.primary[i]):.10g}'>{float(scores.primary[i]):.4g}</td></tr>"
        for r, i in enumerate(order[:max_flagged_rows]))
    more = (f"<p>The first {max_flagged_rows} of {len(order)} flagged images; all are in scores.csv.</p>"
            if len(order) > max_flagged_rows else "")
    flagged_table = (f"<h2>Flagged images ({len(order)} of {scores.primary.size})</h2>"
                     "<p>Click a column header to sort.</p>"
                     '<table class="sortable" id="flagged"><thead><tr><th>rank</th><th>image</th><th>defect</th>'
                     f"<th>label</th><th>score</th></tr></thead><tbody>{flagged_rows}</tbody></table>{more}")
    skipped_html = ("<h2>Skipped files</h2><p>None: every file was read.</p>" if not skipped else
                    f"<h2>Skipped files ({len(skipped)})</h2><p>Unreadable, left out with --skip-bad:</p><ul>"
                    + "".join(f"<li>{esc(s)}</li>" for s in skipped) + "</ul>")
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    sel = metrics.get("selection")
    selection = "" if not sel or not sel.get("best") else (
        "<h2>Model selection (on the labelled validation split, never the test)</h2><p>Kept epoch "
        f"{sel['best']['epoch']} of {sel['history'][-1]['epoch']}: validation AUROC "
        f"{_fmt(sel['best']['validation_auroc'])} ({esc(sel['best']['score'])}); every epoch scored in "
        "metrics.json (<code>selection.history</code>).</p>")
    warns = metrics.get("warnings") or []
    warnings_html = "" if not warns else (
        '<p class="note"><b>Read these metrics with care:</b></p><ul class="note">'
        + "".join(f"<li>{esc(w)}</li>" for w in warns) + "</ul>")
    cfg_text = esc(yaml.safe_dump(config, sort_keys=False))
    name = esc(str(config.get("name")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reconad report: {name}</title>
<style>{_CSS}</style>
</head><body>
<h1>reconad report: {name}</h1>
<p>Dataset <b>{esc(str((config.get('data') or {}).get('name')))}</b>; scores per image in
<a href="scores.csv">scores.csv</a>; all metrics in <a href="metrics.json">metrics.json</a>.</p>
<h2>Run</h2><table>{facts_html}</table>
<h2>Metrics</h2>{warnings_html}<div class="row"><table><tr><th>metric</th><th>value</th><th>what it says</th></tr>{''.join(rows)}</table>
{fig("curves", "Training curves from history.csv: each loss term per stage against the epoch, and the validation AUROC where the run has a validation split.")}</div>
<h2>Threshold</h2>{threshold_sentence(calibration, scores.names[0] if scores.names else "score")}
{threshold_check(scores, metrics)}
{confusion}{defects}
<h2>Scorers</h2><table><tr><th>scorer</th><th>image AUROC</th><th>threshold</th><th>TPR</th><th>TNR</th>
<th>F1</th></tr>{scorer_rows}</table>{evaluator_html}{selection}
<h2>Pictures</h2>{pictures}
{flagged_table}
{skipped_html}
<h2>Config</h2><pre>{cfg_text}</pre>
{_SORT_JS}
</body></html>
"""
