"""Video for novelty detection (OLED §4.4, MMAE §4.2): frames, per-frame labels, and the ``video`` dataset.

Frames come from a folder of frame images or a video file. A folder is read in natural order (``frame2.png``
before ``frame10.png``); a video file is read with imageio (the ``[video]`` extra; formats beyond GIF need an
imageio backend such as ``imageio[ffmpeg]`` or ``av``) or, where imageio cannot, with OpenCV (``cv2``) when it
is installed. Labels come from a text/CSV file with one 0/1 per frame (the label is the last field of each
line, so ``name,label`` rows work; a non-numeric first line is a header) or from a ``.npy`` array.

A video model sees frames cut into units (``VideoCut``), one of:

* ``patches`` (OLED): every frame cut into ``patch`` x ``patch`` squares every ``patch_stride`` pixels, each
  resized to ``data.image_size``; a frame's score is the maximum over its patches.
* ``clips`` (MMAE): ``clip_frames`` consecutive frames resized to ``data.image_size``, stacked frame-major as
  the channels of one image (``clip_frames x channels``); clips start every ``clip_stride`` frames to train and
  every ``score_stride`` frames to score; a frame's score is its reconstruction error averaged over the clips
  that hold it.

``reconad video RUN FRAMES`` (``reconad.engine.video``) scores any video with a run trained on ``video``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .base import (NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings,
                   holdout_count, image_size, resize_images, to_channels)
from .folder import image_extensions, read_image

__all__ = ["VideoCut", "clip_starts", "natural_key", "patchify", "read_frame_labels", "read_frames", "video"]


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


def _to_frame(a: np.ndarray, channels: int) -> torch.Tensor:
    """An (H, W) or (H, W, C) RGB array -> (channels, H, W) float32 in [0, 1]."""
    scale = 65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0
    t = torch.from_numpy(np.clip(a.astype(np.float32) / scale, 0.0, 1.0))
    t = t.unsqueeze(0) if t.dim() == 2 else t[..., :3].permute(2, 0, 1)
    return to_channels(t.unsqueeze(0), channels)[0]


def _imageio_frames(path: Path) -> list[np.ndarray]:
    import imageio.v3 as iio

    return [np.asarray(a) for a in iio.imiter(path)]


def _opencv_frames(path: Path) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError("OpenCV cannot open it")
    out = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append(bgr[..., ::-1] if bgr.ndim == 3 else bgr)   # BGR -> RGB
    finally:
        cap.release()
    if not out:
        raise OSError("OpenCV read no frames")
    return out


def _read_video(path: Path, channels: int) -> tuple[list[torch.Tensor], list[str]]:
    """imageio first; OpenCV where imageio is missing or has no backend for the file (e.g. no ffmpeg)."""
    failures = []
    for name, reader in (("imageio", _imageio_frames), ("OpenCV", _opencv_frames)):
        try:
            arrays = reader(path)
        except ImportError:
            failures.append(f"{name} is not installed")
            continue
        except Exception as exc:  # noqa: BLE001 - any backend failure: try the next, then name them all
            failures.append(f"{name}: {exc}")
            continue
        frames = [_to_frame(a, channels) for a in arrays]
        return frames, [f"{path.name}#{i}" for i in range(len(frames))]
    raise DataError(f"cannot read the video {path} ({'; '.join(failures)}); pip install 'reconad[video]' "
                    f"(imageio) with a backend (imageio[ffmpeg] or av), or opencv-python-headless, or pass a "
                    f"folder of frame images")


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


# ------------------------------------------------------------------------------------------ the video protocol

def patchify(frames: torch.Tensor, patch: int = 30, stride: int | None = None) -> torch.Tensor:
    """(T, C, H, W) -> (T, P, C, patch, patch): the patches of every frame on a regular grid (``stride``
    defaults to ``patch``: non-overlapping; the right / bottom remainder smaller than a patch is dropped)."""
    if frames.dim() != 4:
        raise ValueError(f"patchify: frames must be (T, C, H, W), got shape {tuple(frames.shape)}")
    stride = stride or patch
    t, c, h, w = frames.shape
    if patch < 1 or stride < 1 or patch > h or patch > w:
        raise ValueError(f"patchify: patch {patch} (stride {stride}) does not fit frames of {h}x{w}")
    cols = F.unfold(frames, kernel_size=patch, stride=stride)          # (T, C*p*p, P)
    return cols.transpose(1, 2).reshape(t, -1, c, patch, patch)


def clip_starts(n_frames: int, frames: int, stride: int) -> list[int]:
    """First frames of the clips [s, s + frames) that cover 0..n_frames-1 (the last clip ends at the end)."""
    if n_frames < frames:
        raise ValueError(f"a clip needs {frames} frames, the video has {n_frames}")
    if stride < 1:
        raise ValueError(f"clip stride must be >= 1, got {stride}")
    starts = list(range(0, n_frames - frames + 1, stride))
    if starts[-1] != n_frames - frames:
        starts.append(n_frames - frames)
    return starts


@dataclass(frozen=True)
class VideoCut:
    """How a video run cuts frames into the units its model sees: the ``video`` dataset's options."""

    unit: Literal["patches", "clips"] = "patches"
    patch: int = 30                       # patches: side in frame pixels (30 in OLED)
    patch_stride: int | None = None       # patches: pixels between patches (None: ``patch``)
    clip_frames: int = 16                 # clips: frames per clip (16 in MMAE)
    clip_stride: int = 2                  # clips: frames between training clips
    score_stride: int = 1                 # clips: frames between scored clips
    frame_size: tuple[int, int] | None = None   # [H, W] every frame is resized to first (None: as read)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> VideoCut:
        keep = {k: options[k] for k in asdict(cls()) if k in options}
        if keep.get("frame_size") is not None:
            keep["frame_size"] = tuple(keep["frame_size"])
        cut = cls(**keep)
        cut.check()
        return cut

    def check(self) -> None:
        if self.unit not in ("patches", "clips"):
            raise DataError(f"data.unit: expected 'patches' or 'clips', got {self.unit!r}")
        for key in ("patch", "patch_stride", "clip_frames", "clip_stride", "score_stride"):
            v = getattr(self, key)
            if v is None and key == "patch_stride":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"data.{key}: expected a positive number of "
                                f"{'frames' if key.startswith(('clip', 'score')) else 'pixels'}, got {v!r}")
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 1):
            raise DataError(f"data.frame_size: expected [H, W], got {list(self.frame_size)!r}")

    def read(self, source: str | Path, channels: int, image_size: int) -> tuple[torch.Tensor, list[str]]:
        """The frames of ``source`` as this cut needs them: clips resize every frame to the model's size."""
        size = (image_size, image_size) if self.unit == "clips" else self.frame_size
        return read_frames(source, size=size, channels=channels)

    def units(self, frames: torch.Tensor, image_size: int, *, scoring: bool
              ) -> tuple[torch.Tensor, list[list[int]]]:
        """(N, C', S, S) model inputs cut from (T, C, H, W) ``frames`` and the frames each unit shows
        (patches: one; clips: ``clip_frames``, scored every ``score_stride`` frames when ``scoring``)."""
        t = frames.shape[0]
        if self.unit == "patches":
            try:
                p = patchify(frames, self.patch, self.patch_stride)
            except ValueError as exc:
                raise DataError(f"data.patch: {exc}") from exc
            n = p.shape[1]
            flat = resize_images(p.reshape(t * n, *p.shape[2:]), image_size)
            return flat, [[i] for i in range(t) for _ in range(n)]
        try:
            starts = clip_starts(t, self.clip_frames, self.score_stride if scoring else self.clip_stride)
        except ValueError as exc:
            raise DataError(f"data.clip_frames: {exc}") from exc
        clips = torch.stack([frames[s:s + self.clip_frames].flatten(0, 1) for s in starts])
        return clips, [list(range(s, s + self.clip_frames)) for s in starts]

    def unit_names(self, names: list[str], shows: list[list[int]]) -> list[str]:
        if self.unit == "patches":
            count: dict[int, int] = {}
            out = []
            for f in shows:
                j = count[f[0]] = count.get(f[0], -1) + 1
                out.append(f"{names[f[0]]}#p{j}")
            return out
        return [f"{names[f[0]]}+{len(f)}" for f in shows]


def video(settings: DataSettings, unit: Literal["patches", "clips"] = "patches", patch: int = 30,
          patch_stride: int | None = None, clip_frames: int = 16, clip_stride: int = 2, score_stride: int = 1,
          frame_size: list[int] | None = None, test_frames: str | None = None,
          test_labels: str | None = None) -> DatasetSplits:
    """Normal video (``data.root``: a folder of frame images or a video file) cut into patches or clips
    (``VideoCut``); a seeded ``data.holdout_fraction`` of the units is held out for the threshold.

    Args:
        unit: ``patches`` (OLED) or ``clips`` (MMAE).
        patch: patches: side in frame pixels (30 in OLED); patch_stride: pixels between patches (null: patch).
        clip_frames: clips: frames per clip; clip_stride: frames between training clips; score_stride: frames
            between scored clips (``reconad video``).
        frame_size: [H, W] every frame is resized to before cutting patches (null: as read).
        test_frames: a video to test on (null: the test split is the holdout); test_labels: its per-frame 0/1
            labels. A unit is anomalous when a frame it shows is; ``reconad video`` gives frame-level metrics.
    """
    check_settings(settings)
    cut = VideoCut.from_options({"unit": unit, "patch": patch, "patch_stride": patch_stride,
                                 "clip_frames": clip_frames, "clip_stride": clip_stride,
                                 "score_stride": score_stride, "frame_size": frame_size})
    if not settings.root:
        raise DataError("data.root: the video dataset needs the normal training frames (a folder of frame "
                        "images or a video file)")
    channels = settings.channels or 1
    size = image_size(settings, None)     # patches and clips are cut to it: no own size
    frames, names = cut.read(settings.root, channels, size)
    images, shows = cut.units(frames, size, scoring=False)
    paths = cut.unit_names(names, shows)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(images.shape[0])
    n_hold = holdout_count(images.shape[0], settings.holdout_fraction, f"video {settings.root}: {cut.unit}")
    hold, train = np.sort(order[:n_hold]), np.sort(order[n_hold:])

    def split(index: np.ndarray, imgs: torch.Tensor, names: list[str], labels: list[int]) -> TensorImageDataset:
        idx = torch.from_numpy(index)
        return TensorImageDataset(imgs[idx], [labels[i] for i in index], [names[i] for i in index],
                                  [NORMAL if labels[i] == 0 else "anomalous_frame" for i in index])

    zeros = [0] * images.shape[0]
    train_ds, hold_ds = split(train, images, paths, zeros), split(hold, images, paths, zeros)
    test_ds = hold_ds
    if test_frames:
        tframes, tnames = cut.read(test_frames, channels, size)
        timgs, tshows = cut.units(tframes, size, scoring=True)
        frame_labels = read_frame_labels(test_labels, len(tnames)) if test_labels else np.zeros(len(tnames), np.int64)
        labels = [int(frame_labels[f].max()) for f in tshows]
        test_ds = split(np.arange(timgs.shape[0]), timgs, cut.unit_names(tnames, tshows), labels)
    elif test_labels:
        raise DataError("data.test_labels: given without data.test_frames")
    return DatasetSplits(train=train_ds, holdout=hold_ds, test=test_ds, channels=images.shape[1],
                         image_size=size, has_masks=False, skipped=[])
