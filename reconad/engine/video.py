"""Scoring a video with a trained video run (``reconad video RUN FRAMES``): frame scores, frame-level AUROC and
EER, ``frame_scores.csv`` and a score-over-time plot.

The run's ``video`` dataset options say how frames become model inputs (``reconad.data.video.VideoCut``), so
every video run scores any video with the same arguments:

* patches (OLED): every patch is scored by the run's scorers over the whole video (set-level steps such as
  OLED's min-max run over all patches of the video), and a frame's score is the maximum over its patches;
* clips (MMAE): a frame's score is its mean squared reconstruction error in every clip that holds it,
  averaged over those clips.
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .. import metrics as M
from ..data.base import DataError, TensorImageDataset
from ..data.video import VideoCut, read_frame_labels
from ..io import atomic_write, write_json
from ..plugins import get_registry
from ..registry import Registry
from .evaluate import check_finite, score_dataset
from .runs import OutDir
from .runtime import RunError, flush_denormals
from .trained import Trained, load_trained, run_folder

__all__ = ["VideoResult", "frame_scores", "score_video", "video_cut", "video_metrics"]

VIDEO_DATASET = "video"


@dataclass
class VideoResult:
    names: list[str]                  # the frames, in order
    scores: dict[str, np.ndarray]     # score name -> (T,); the first is the primary score
    labels: np.ndarray | None         # (T,) 0/1 when labels were given
    metrics: dict[str, Any] | None
    files: dict[str, str]

    @property
    def primary(self) -> np.ndarray:
        return next(iter(self.scores.values()))


def video_cut(trained: Trained, where: str) -> VideoCut:
    """The run's ``VideoCut``; a run not trained on the ``video`` dataset is a ``RunError`` saying so."""
    cfg = trained.config
    if cfg.data.name != VIDEO_DATASET:
        raise RunError(f"{where} is not a video run: it was trained on data.name {cfg.data.name!r}; `reconad "
                       f"video` scores runs trained on the {VIDEO_DATASET!r} dataset (data: {{name: video, root: "
                       f"NORMAL_FRAMES, unit: patches | clips}}, e.g. configs/oled/video.yaml, "
                       f"configs/mmae/video.yaml)")
    return VideoCut.from_options(cfg.data_options)


@torch.no_grad()
def _clip_errors(model: Any, clips: torch.Tensor, frames_per_clip: int, device: torch.device,
                 batch_size: int) -> np.ndarray:
    """(N, frames_per_clip) mean squared reconstruction error of every frame of every clip."""
    was = model.training
    model.eval()
    out = []
    try:
        with flush_denormals(device):
            for i in range(0, clips.shape[0], batch_size):
                x = clips[i:i + batch_size].to(device)
                err = (model(x)["recon"].float() - x) ** 2              # (B, L * C, S, S), frame-major
                out.append(err.view(x.shape[0], frames_per_clip, -1).mean(2).double().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out)


def frame_scores(unit_scores: np.ndarray, shows: list[list[int]], n_frames: int, unit: str) -> np.ndarray:
    """(T,) frame scores from per-unit scores: patches ``(N,)``, a frame's maximum over its patches; clips
    ``(N, clip_frames)``, a frame's mean over the clips that hold it."""
    s = np.asarray(unit_scores, dtype=np.float64)
    if unit == "patches":
        out = np.full(n_frames, -np.inf)
        np.maximum.at(out, np.array([f[0] for f in shows]), s)
        return out
    total, count = np.zeros(n_frames), np.zeros(n_frames)
    for f, e in zip(shows, s):
        np.add.at(total, f, e)
        np.add.at(count, f, 1.0)
    return total / count


def score_frames(trained: Trained, frames: torch.Tensor, cut: VideoCut, *, batch_size: int = 64
                 ) -> dict[str, np.ndarray]:
    """Frame scores of (T, C, H, W) ``frames`` by score name (the primary first)."""
    model, size = trained.model, trained.signature["image_size"]
    device = next(model.parameters()).device
    units, shows = cut.units(frames, size, scoring=True)
    if units.shape[1] != trained.signature["channels"]:
        raise DataError(f"the video's {cut.unit} have {units.shape[1]} channels but the run's model takes "
                        f"{trained.signature['channels']}")
    t = frames.shape[0]
    if cut.unit == "clips":
        check_finite(units, [f"clip at frame {f[0]}" for f in shows], "video clips")
        errors = _clip_errors(model, units, cut.clip_frames, device, batch_size)
        return {"recon_error": frame_scores(errors, shows, t, "clips")}
    n = len(shows)
    data = TensorImageDataset(units, [0] * n, [f"frame {f[0]} patch" for f in shows], ["good"] * n)
    scored = score_dataset(model, data, device, batch_size, keep_maps=False, keep_masks=False,
                           where="video patches")
    return {name: frame_scores(scored.image[name], shows, t, "patches") for name in scored.names}


def video_metrics(scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Frame-level AUROC and EER of every score against 0/1 frame labels (1 = anomalous); the primary (first)
    score's also at the top level."""
    labels = np.asarray(labels, dtype=np.int64)
    if not 0 < labels.sum() < labels.size:
        raise DataError(f"video metrics need normal and anomalous frames, got {int(labels.sum())} anomalous of "
                        f"{labels.size}")
    per = {k: {"frame_auroc": float(M.auroc(v, labels)), "eer": float(M.eer(v, labels))} for k, v in scores.items()}
    first = next(iter(per))
    return {"n_frames": int(labels.size), "n_anomalous": int(labels.sum()), "score": first, **per[first],
            "scores": per}


def _write_csv(path: str, names: list[str], scores: dict[str, np.ndarray], labels: np.ndarray | None) -> None:
    keys = list(scores)
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "name", "score", "label", *[f"score_{k}" for k in keys[1:]]])
        for i, n in enumerate(names):
            w.writerow([i, n, f"{float(scores[keys[0]][i]):.8g}", "" if labels is None else int(labels[i]),
                        *[f"{float(scores[k][i]):.8g}" for k in keys[1:]]])


def _plot(path: str, score: np.ndarray, labels: np.ndarray | None, title: str) -> str:
    from ..metrics.plots import _figure, _save

    fig, ax = _figure()
    fig.set_size_inches(8.0, 3.0)
    x = np.arange(score.size)
    if labels is not None and labels.any():
        ax.fill_between(x, 0, 1, where=labels.astype(bool), step="mid", color="tab:red", alpha=0.15,
                        transform=ax.get_xaxis_transform(), label="anomalous frames")
        ax.legend(loc="upper right")
    ax.plot(x, score, lw=1.2, color="tab:blue")
    ax.set(xlabel="frame", ylabel="anomaly score", title=title, xlim=(0, max(score.size - 1, 1)))
    return _save(fig, path)


def score_video(checkpoint: str, frames: str, out_dir: str | None = None, *, labels: str | None = None,
                device: str | torch.device = "auto", batch_size: int = 64,
                registry: Registry | None = None) -> VideoResult:
    """Score every frame of ``frames`` (a folder of frame images or a video file) with the video run
    ``checkpoint``; write ``frame_scores.csv``, ``scores.png`` and, with ``labels`` (one 0/1 per frame),
    ``video_metrics.json`` into ``out_dir`` (default: the run folder)."""
    trained = load_trained(checkpoint, device, registry or get_registry())
    cut = video_cut(trained, repr(checkpoint))
    channels = trained.signature["channels"] // (cut.clip_frames if cut.unit == "clips" else 1)
    video, names = cut.read(frames, channels, trained.signature["image_size"])
    y = read_frame_labels(labels, len(names)) if labels else None
    scores = score_frames(trained, video, cut, batch_size=batch_size)
    metrics = video_metrics(scores, y) if y is not None else None
    out_dir = out_dir or run_folder(checkpoint)
    files = {"scores": os.path.join(out_dir, "frame_scores.csv"), "plot": os.path.join(out_dir, "scores.png")}
    with OutDir(out_dir):
        _write_csv(files["scores"], names, scores, y)
        _plot(files["plot"], next(iter(scores.values())), y, f"{trained.config.name}: {os.path.basename(frames)}")
        if metrics is not None:
            files["metrics"] = os.path.join(out_dir, "video_metrics.json")
            write_json(files["metrics"], {**metrics, "frames": frames, "cut": asdict(cut)})
    return VideoResult(names, scores, y, metrics, files)
