"""MMAE's video variant (paper §4.2): 3-D convolution encoders and decoder over cubes of 16 grayscale frames,
K = 4 scales, one memory per scale; a frame's score is its reconstruction error in the cubes that hold it.

    model = VideoMMAE(image_size=64)
    train_video(model, train_frames)              # (T, 1, H, W) normal frames in [0, 1]
    scores = frame_scores(model, test_frames)     # (T,) per-frame reconstruction error
    auroc = reconad.metrics.auroc(scores, labels)

``run_video`` does all of it from folders of frames and a label file (``reconad mmae video``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reconad.components import MemoryRead

from .model import MultiScaleDecoder, MultiScaleEncoder, MultiScaleMemory

__all__ = ["VideoMMAE", "VideoResult", "cube_starts", "frame_scores", "run_video", "train_video"]


class VideoMMAE(nn.Module):
    """3-D MMAE over ``(B, 1, frames, image_size, image_size)`` cubes: K encoders (frames resized to
    image_size * gamma^(i-1), time kept), each down to ``(channels, feature_frames, s, s)``; one memory per
    scale; the attention fuser; a 3-D pixel-shuffle decoder. ``forward`` returns ``{"recon", "memory",
    "scale_weights"}``."""

    def __init__(self, image_size: int = 64, frames: int = 16, scales: int = 4, gamma: float = 0.5,
                 feature_size: int | None = None, feature_frames: int = 2, channels: int = 32,
                 base_width: int = 16, max_width: int = 64, slots: int = 60, shrink_threshold: float | None = None,
                 fuser: Literal["attention", "mean"] = "attention") -> None:
        super().__init__()
        self.image_size, self.frames = image_size, frames
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.encoder = MultiScaleEncoder(1, image_size, scales, gamma, feature_size, channels, base_width,
                                         max_width, dims=3, frames=frames, feature_frames=feature_frames)
        fs = self.encoder.feature_size
        shapes = [(channels, feature_frames, fs, fs)] * scales
        self.memory = MultiScaleMemory(shapes, slots, shrink_threshold)
        self.decoder = MultiScaleDecoder(shapes, 1, image_size, fuser, None, base_width, max_width,
                                         dims=3, frames=frames, start_frames=feature_frames)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if x.dim() != 5 or tuple(x.shape[1:]) != (1, self.frames, self.image_size, self.image_size):
            raise ValueError(f"VideoMMAE: expects cubes (B, 1, {self.frames}, {self.image_size}, "
                             f"{self.image_size}), got {tuple(x.shape)}")
        read: MemoryRead = self.memory(self.encoder(x))
        out = self.decoder(read.output)
        return {"recon": out["recon"], "memory": read, "scale_weights": out["scale_weights"]}


def cube_starts(n_frames: int, frames: int, stride: int) -> list[int]:
    """First frames of the cubes [s, s + frames) that cover 0..n_frames-1 (the last cube ends at the end)."""
    if n_frames < frames:
        raise ValueError(f"a cube needs {frames} frames, the video has {n_frames}")
    if stride < 1:
        raise ValueError(f"cube stride must be >= 1, got {stride}")
    starts = list(range(0, n_frames - frames + 1, stride))
    if starts[-1] != n_frames - frames:
        starts.append(n_frames - frames)
    return starts


def _cubes(video: torch.Tensor, starts: list[int], frames: int) -> torch.Tensor:
    """(T, 1, H, W) frames -> (N, 1, frames, H, W) cubes."""
    return torch.stack([video[s:s + frames].transpose(0, 1) for s in starts])


def train_video(model: VideoMMAE, video: torch.Tensor, *, epochs: int = 10, batch_size: int = 8,
                lr: float = 1e-4, weight_decay: float = 1e-5, entropy_weight: float = 0.0002, stride: int = 2,
                seed: int = 0, device: str | torch.device = "cpu", log: Callable[[str], None] = print
                ) -> list[float]:
    """Train on the cubes of normal frames ``video`` (T, 1, H, W): MSE (eq. 3) + entropy_weight x the memory
    entropy, Adam. Returns the mean loss of every epoch."""
    device = torch.device(device)
    starts = cube_starts(video.shape[0], model.frames, stride)
    cubes = _cubes(video, starts, model.frames)
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(len(cubes), generator=g)
        total, n = 0.0, 0
        for i in range(0, len(cubes), batch_size):
            x = cubes[perm[i:i + batch_size]].to(device)
            out = model(x)
            loss = F.mse_loss(out["recon"], x) + entropy_weight * out["memory"].entropy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(x), n + len(x)
        history.append(total / n)
        log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.5f}")
    return history


@torch.no_grad()
def frame_scores(model: VideoMMAE, video: torch.Tensor, *, stride: int = 1, batch_size: int = 8,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """(T,) frame scores: each frame's mean squared reconstruction error, averaged over the cubes that hold it
    (cubes every ``stride`` frames). Higher = more anomalous."""
    device = torch.device(device)
    model.to(device).eval()
    starts = cube_starts(video.shape[0], model.frames, stride)
    total = torch.zeros(video.shape[0], dtype=torch.float64)
    count = torch.zeros(video.shape[0], dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        x = _cubes(video, chunk, model.frames).to(device)
        err = ((model(x)["recon"] - x) ** 2).mean(dim=(1, 3, 4)).double().cpu()    # (N, frames)
        for s, e in zip(chunk, err):
            total[s:s + model.frames] += e
            count[s:s + model.frames] += 1
    return (total / count).numpy()


@dataclass
class VideoResult:
    auroc: float
    scores: np.ndarray         # (T,) frame scores of the test frames
    labels: np.ndarray         # (T,) 0/1
    names: list[str]
    seconds: float
    files: dict[str, str]


def run_video(train: str, frames: str, labels: str, *, out: str | None = None, size: int = 64,
              epochs: int = 10, batch_size: int = 8, lr: float = 1e-4, train_stride: int = 2,
              test_stride: int = 1, seed: int = 0, device: str = "cpu", model_options: dict[str, Any] | None = None,
              log: Callable[[str], None] = print) -> VideoResult:
    """Train a ``VideoMMAE`` on the normal frames in ``train`` (a folder or video), score the frames in
    ``frames`` and compute the frame-level AUROC against ``labels`` (one 0/1 per test frame). With ``out``,
    writes ``frame_scores.csv`` and ``metrics.json`` there."""
    from reconad.data.base import DataError
    from reconad.data.video import read_frame_labels, read_frames
    from reconad.io import write_json, write_text
    from reconad.metrics import auroc

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train_video_frames, _ = read_frames(train, size=size, channels=1)
    test_frames, names = read_frames(frames, size=size, channels=1)
    y = read_frame_labels(labels, len(names))
    model = VideoMMAE(image_size=size, **(model_options or {}))
    for what, video in (("--train", (train, train_video_frames)), ("--frames", (frames, test_frames))):
        if video[1].shape[0] < model.frames:
            raise DataError(f"{what} {video[0]}: {video[1].shape[0]} frame(s), but a cube needs {model.frames}")
    log(f"video MMAE: {sum(p.numel() for p in model.parameters())} parameters, {train_video_frames.shape[0]} "
        f"training frames, {len(names)} test frames ({int(y.sum())} anomalous)")
    train_video(model, train_video_frames, epochs=epochs, batch_size=batch_size, lr=lr, stride=train_stride,
                seed=seed, device=device, log=log)
    scores = frame_scores(model, test_frames, stride=test_stride, batch_size=batch_size, device=device)
    value = auroc(scores, y)
    files: dict[str, str] = {}
    if out:
        os.makedirs(out, exist_ok=True)
        files["scores"] = os.path.join(out, "frame_scores.csv")
        write_text(files["scores"], "frame,score,label\n" + "".join(
            f"{n},{s:.8g},{int(lab)}\n" for n, s, lab in zip(names, scores, y)))
        files["metrics"] = os.path.join(out, "metrics.json")
        write_json(files["metrics"], {"frame_auroc": value, "n_frames": len(names), "n_anomalous": int(y.sum()),
                                      "model": model.config, "epochs": epochs, "lr": lr})
    return VideoResult(value, scores, y, names, time.perf_counter() - t0, files)
