"""Frames for video novelty detection (OLED §4.4, MMAE §4.2): a folder of frame images or a video file, and
per-frame 0/1 labels.

A folder is read in natural order (``frame2.png`` before ``frame10.png``); a video file is read with imageio
(the ``[video]`` extra; formats beyond GIF need an imageio backend such as ``imageio[ffmpeg]`` or ``av``).
Labels come from a text/CSV file with one 0/1 per frame (the label is the last field of each line, so
``name,label`` rows work; a non-numeric first line is a header) or from a ``.npy`` array.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import DataError, to_channels
from .folder import image_extensions, read_image

__all__ = ["natural_key", "read_frame_labels", "read_frames"]


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value: ``f2`` < ``f10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _resize(frames: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    if size is None:
        return frames
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(frames.shape[-2:]) == hw:
        return frames
    return F.interpolate(frames, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)


def _read_video(path: Path, channels: int) -> tuple[list[torch.Tensor], list[str]]:
    try:
        import imageio.v3 as iio
    except ImportError as exc:
        raise DataError(f"reading the video {path} needs imageio: pip install 'reconad[video]' "
                        f"(or pass a folder of frame images)") from exc
    frames = []
    try:
        for arr in iio.imiter(path):
            a = np.asarray(arr)
            scale = 65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0
            t = torch.from_numpy(np.clip(a.astype(np.float32) / scale, 0.0, 1.0))
            t = t.unsqueeze(0) if t.dim() == 2 else t[..., :3].permute(2, 0, 1)
            frames.append(to_channels(t.unsqueeze(0), channels)[0])
    except Exception as exc:  # noqa: BLE001 - any backend failure: name the file and the way out
        raise DataError(f"cannot read the video {path}: {exc}; install an imageio backend "
                        f"(pip install imageio[ffmpeg]) or pass a folder of frame images") from exc
    return frames, [f"{path.name}#{i}" for i in range(len(frames))]


def read_frames(source: str | Path, *, size: int | tuple[int, int] | None = None,
                channels: int = 1) -> tuple[torch.Tensor, list[str]]:
    """``(T, channels, H, W)`` float32 frames in [0, 1] and their names, from a folder of images or a video
    file; ``size`` (an int or ``(H, W)``) resizes every frame. Frames of different sizes without ``size`` are
    an error naming the first odd one."""
    if channels not in (1, 3):
        raise DataError(f"read_frames: channels must be 1 or 3, got {channels}")
    path = Path(source)
    if path.is_dir():
        exts = image_extensions()
        files = sorted((p for p in path.iterdir()
                        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"no frame images in {path} (looked for {', '.join(sorted(exts)[:6])}, ...)")
        frames, names = [], []
        for f in files:
            try:
                frames.append(read_image(f, channels))
            except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
                raise DataError(f"cannot read frame {f}: {exc}") from exc
            names.append(f.name)
    elif path.is_file():
        frames, names = _read_video(path, channels)
        if not frames:
            raise DataError(f"the video {path} has no frames")
    else:
        raise DataError(f"frames: {path} is neither a folder of frame images nor a video file")
    if size is None:
        first = tuple(frames[0].shape[-2:])
        for f, n in zip(frames, names):
            if tuple(f.shape[-2:]) != first:
                raise DataError(f"frame {n} in {path} is {tuple(f.shape[-2:])} but the first frame is {first}; "
                                f"pass size= to resize every frame")
        return torch.stack(frames), names
    return torch.cat([_resize(f.unsqueeze(0), size) for f in frames]), names


def read_frame_labels(path: str | Path, n_frames: int) -> np.ndarray:
    """``(n_frames,)`` int64 0/1 labels (1 = anomalous frame) from a text/CSV file or a ``.npy`` array."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"frame labels: no such file {p}")
    if p.suffix.lower() == ".npy":
        try:
            raw = np.load(p, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"frame labels: cannot read {p} as a .npy array: {exc}") from exc
        values = np.asarray(raw).reshape(-1)
    else:
        rows = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        values_list = []
        for i, line in enumerate(rows, 1):
            field = re.split(r"[,;\t ]+", line)[-1]
            try:
                values_list.append(float(field))
            except ValueError:
                if i == 1 and not values_list:
                    continue  # a header line
                raise DataError(f"frame labels: {p} line {i} ends in {field!r}, expected 0 or 1") from None
        values = np.asarray(values_list)
    if values.size != n_frames:
        raise DataError(f"frame labels: {p} has {values.size} label(s) but there are {n_frames} frames")
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"frame labels: {p} label {i} (frame {i}) is {values[i]!r}, expected 0 or 1")
    return values.astype(np.int64)
