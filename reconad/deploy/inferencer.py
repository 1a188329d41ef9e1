"""ONNX Runtime inference of a model written by ``reconad export``, without PyTorch (issue #24).

``OnnxInferencer(path)`` reads the file's metadata (format ``reconad-onnx/1``: threshold, input size, channels,
where the resize happens) and scores images as ``reconad.Detector`` does: ``decision_function``,
``anomaly_map`` (at each image's own size) and ``predict``. ``reconad predict --onnx model.onnx IMAGES --out DIR``
writes what ``reconad predict`` writes. Nothing here imports torch: only numpy, Pillow and onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .._imagefiles import DataError, array_images, check_any_read, conversion_notes, heat_overlay, heatmap_path, \
    heatmaps_folder, image_names, read_array, read_or_skip, save_png, write_predictions

__all__ = ["FORMAT", "OUTPUTS", "OnnxInferencer", "OnnxModelError", "Scored", "predict_command", "predict_files",
           "resize_bilinear", "resize_images_array"]

FORMAT = "reconad-onnx/1"
OUTPUTS = ("score", "anomaly_map", "is_anomaly")


class OnnxModelError(DataError):
    """The .onnx file is missing, unreadable or not a reconad export; the message names the file and key."""


# --- resizing as the PyTorch path does, in numpy


def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of antialiased bilinear resampling (a triangle filter widened by the
    downscale factor, each row normalised), as ``F.interpolate(..., antialias=True)`` and Pillow compute them."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        x = (np.arange(lo, hi) - center + 0.5) * invscale
        row = np.clip(1.0 - np.abs(x), 0.0, None)
        w[i, lo:hi] = row / row.sum() if row.sum() > 0 else row
    return w


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of plain bilinear resampling with half-pixel centres (``align_corners=False``,
    no antialiasing), as ``F.interpolate(..., mode="bilinear")`` computes them."""
    scale = np.float32(n_in / n_out)     # float32 source coordinates, as torch computes them for float maps
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float64)
    w = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(w, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), i1), frac)
    return w


def resize_images_array(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, C, size, size) float32: antialiased bilinear, clipped to [0, 1];
    numpy's twin of ``reconad.data.base.resize_images``."""
    if images.shape[-2:] == (size, size):
        return images
    wy, wx = _aa_weights(images.shape[-2], size), _aa_weights(images.shape[-1], size)
    out = wy @ images.astype(np.float64) @ wx.T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w) maps -> (N, height, width) float32, plain bilinear (``align_corners=False``), as
    ``reconad.Detector.anomaly_map`` brings the model's maps to the input's size."""
    if maps.shape[-2:] == (height, width):
        return maps
    wy, wx = _linear_weights(maps.shape[-2], height), _linear_weights(maps.shape[-1], width)
    return (wy @ maps.astype(np.float64) @ wx.T).astype(np.float32)


# --- the inferencer


def _meta_float(path: str, meta: dict[str, str], key: str, optional: bool) -> float | None:
    raw = meta.get(key, "")
    if raw == "" and optional:
        return None
    try:
        return float(raw)
    except ValueError:
        raise OnnxModelError(f"{path}: metadata {key}={raw!r} is not a number (expected the repr of a float"
                             f"{' or empty' if optional else ''})") from None


def _meta_choice(path: str, meta: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    raw = meta.get(key)
    if raw not in choices:
        raise OnnxModelError(f"{path}: metadata {key}={raw!r}, expected one of {', '.join(map(repr, choices))}")
    return raw


@dataclass
class Scored:
    """Per image: the primary score, the anomaly map at the image's own size, the graph's decision."""

    scores: np.ndarray       # (N,) float64
    maps: list[np.ndarray]   # N x (H_i, W_i) float32
    flags: np.ndarray        # (N,) bool


class OnnxInferencer:
    """An exported reconad model under ONNX Runtime: the ``reconad.Detector`` scoring methods, without torch.

    X is a folder of images (every image under it, recursively, in ``reconad predict``'s order), an image file,
    a list of image paths, or a numpy array (N, H, W) / (N, H, W, C) of uint8 or floats in [0, 1]. Files are
    converted to the model's channels (grey <-> RGB); an array must have them. Images of different sizes are
    scored in groups of one size. When the graph does not resize (metadata ``resize: caller``) images are
    resized here to ``image_size`` (antialiased bilinear, as in training) and maps brought back to each image's
    size (bilinear), exactly what the PyTorch path does.

    Args:
        path: the .onnx file ``reconad export`` wrote.
        providers: ONNX Runtime execution providers (default ``["CPUExecutionProvider"]``).
        batch_size: images per run (a model exported with a fixed batch runs in that batch, padded).
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None, batch_size: int = 32) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise OnnxModelError(f"{self.path}: no such file (expected an .onnx model written by `reconad export`)")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxModelError(f"{self.path}: onnxruntime is not installed; pip install 'reconad[deploy]' "
                                 f"(or onnxruntime) to run exported models ({exc})") from None
        try:
            self.session = ort.InferenceSession(self.path, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for any bad file
            raise OnnxModelError(f"{self.path}: not a readable ONNX model ({type(exc).__name__}: "
                                 f"{str(exc).strip()[:300]})") from exc
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._read_metadata()
        self._check_graph()
        if batch_size < 1:
            raise ValueError(f"OnnxInferencer: batch_size must be >= 1, got {batch_size}")
        self.batch_size = self.fixed_batch or batch_size

    def _read_metadata(self) -> None:
        meta, path = self.metadata, self.path
        if meta.get("format") != FORMAT:
            raise OnnxModelError(f"{path}: not a reconad export: metadata format={meta.get('format')!r}, expected "
                                 f"{FORMAT!r} (write it with `reconad export RUN --format onnx`)")
        self.threshold_ = _meta_float(path, meta, "threshold", optional=True)
        self.pixel_threshold_ = _meta_float(path, meta, "pixel_threshold", optional=True)
        self.channels = int(_meta_choice(path, meta, "channels", ("1", "3")))
        self.resize = _meta_choice(path, meta, "resize", ("graph", "caller"))
        size = meta.get("image_size", "")
        if not size.isdigit() or int(size) < 1:
            raise OnnxModelError(f"{path}: metadata image_size={size!r}, expected a positive int (the square side "
                                 "the model was trained on)")
        self.image_size = int(size)
        self.method = meta.get("method", "")
        try:
            self.config: dict[str, Any] = json.loads(meta.get("config") or "{}")
        except json.JSONDecodeError as exc:
            raise OnnxModelError(f"{path}: metadata config is not JSON ({exc})") from None

    def _check_graph(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise OnnxModelError(f"{self.path}: expected one input image (N, C, H, W), got "
                                 f"{[(i.name, i.shape) for i in inputs]}")
        names = tuple(o.name for o in outputs)
        if names != OUTPUTS:
            raise OnnxModelError(f"{self.path}: outputs {names}, expected {OUTPUTS} in that order")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.fixed_size = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) else None

    def __repr__(self) -> str:
        return (f"OnnxInferencer({self.path!r}, method={self.method!r}, image_size={self.image_size}, "
                f"channels={self.channels}, resize={self.resize!r}, threshold_={self.threshold_!r})")

    # --- X -> images

    def _images(self, X: object) -> tuple[list[np.ndarray], list[str]]:
        """X -> (C, H, W) float32 images at their own size, converted to the model's channels, and names."""
        if isinstance(X, (str, os.PathLike)):
            if not os.path.exists(X):
                raise DataError(f"X: {os.fspath(X)!r} does not exist (expected a folder of images or an image file)")
            X = [path for path, _ in image_names([os.fspath(X)])]
        if isinstance(X, np.ndarray):
            arr, what = array_images(X)
            if arr.shape[1] != self.channels:
                raise DataError(f"X: a {what} has {arr.shape[1]} channel(s) but the model takes {self.channels}-"
                                f"channel images; pass a {self.channels}-channel array")
            return list(arr), [f"X[{i}]" for i in range(len(arr))]
        if isinstance(X, (list, tuple)) and X and all(isinstance(p, (str, os.PathLike)) for p in X):
            paths = [os.fspath(p) for p in X]
            return [self._read(p) for p in paths], paths
        if isinstance(X, (list, tuple)) and not X:
            raise DataError(f"X is an empty {type(X).__name__}: expected at least one image")
        raise DataError(f"X: got a {type(X).__name__}; expected a folder of images, an image file, a list of image "
                        "paths, or a numpy array (N, H, W) or (N, H, W, C) of uint8 or floats in [0, 1]")

    def _read(self, path: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise DataError(f"X: {path!r} is not a file (expected image paths)")
        try:
            return read_array(path, self.channels)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
            raise DataError(f"X: cannot read image {path}: {exc}") from exc

    # --- running the graph

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, C, H, W) of one size -> scores (n,), maps (n, H, W), flags (n,)."""
        height, width = x.shape[-2:]
        if self.resize == "caller":
            x = resize_images_array(x, self.image_size)
        elif self.fixed_size is not None and tuple(x.shape[-2:]) != self.fixed_size:
            raise DataError(f"{self.path}: the graph takes {self.fixed_size[0]}x{self.fixed_size[1]} images, got "
                            f"{height}x{width}")
        outs: list[list[np.ndarray]] = [[], [], []]
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            n = len(chunk)
            if self.fixed_batch and n < self.fixed_batch:   # a fixed-batch graph: pad with the last image
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - n, axis=0)])
            result = self.session.run(list(OUTPUTS), {self.input_name: np.ascontiguousarray(chunk, np.float32)})
            for out, value in zip(outs, result):
                out.append(np.asarray(value)[:n])
        scores, maps, flags = (np.concatenate(o) for o in outs)
        return scores.astype(np.float64), resize_bilinear(maps, height, width), flags.astype(bool)

    def score_arrays(self, images: list[np.ndarray]) -> Scored:
        """(C, H, W) float32 images in [0, 1] of any sizes, already at the model's channels: run in groups of one
        size, results in the input order."""
        scores = np.zeros(len(images), dtype=np.float64)
        flags = np.zeros(len(images), dtype=bool)
        maps: list[np.ndarray] = [np.empty(0, np.float32)] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            s, m, f = self._run(np.stack([images[i] for i in idx]))
            scores[idx], flags[idx] = s, f
            for j, i in enumerate(idx):
                maps[i] = m[j]
        return Scored(scores, maps, flags)

    # --- the Detector's scoring methods

    def decision_function(self, X: object) -> np.ndarray:
        """(N,) float64 anomaly scores (higher = more anomalous), as ``reconad.Detector.decision_function``."""
        return self.score_arrays(self._images(X)[0]).scores

    def score_samples(self, X: object) -> np.ndarray:
        """scikit-learn's convention (higher = more normal): ``-decision_function(X)``."""
        return -self.decision_function(X)

    def anomaly_map(self, X: object) -> np.ndarray | list[np.ndarray]:
        """(N, H, W) float32 pixel anomaly maps at X's resolution; for images of different sizes, a list of
        (H_i, W_i) maps in X's order."""
        maps = self.score_arrays(self._images(X)[0]).maps
        return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps

    def predict(self, X: object) -> np.ndarray:
        """(N,) int64: 1 anomalous, 0 normal, the graph's ``is_anomaly`` (``score > threshold_``)."""
        if self.threshold_ is None:
            raise DataError(f"{self.path}: exported without a threshold, so predict cannot decide; use "
                            "decision_function, or export a fitted detector")
        return self.score_arrays(self._images(X)[0]).flags.astype(np.int64)


# --- reconad predict --onnx


def predict_files(inferencer: OnnxInferencer, inputs: list[str], out_dir: str, *, skip_bad: bool = False,
                  log: Callable[[str], None] = print) -> dict[str, str]:
    """``reconad predict``'s outputs for the images ``inputs`` names (files or folders, recursively):
    ``scores.csv`` (``predicted`` is the graph's ``is_anomaly``) and a heatmap overlay per image at its own
    size under ``heatmaps/``, mirroring the input's relative paths."""
    found = image_names(inputs)
    os.makedirs(out_dir, exist_ok=True)
    with heatmaps_folder(out_dir) as heat_dir:
        images, kept, skipped, converted, squeezed = [], [], [], [], []
        for path, name in found:
            read = read_or_skip(path, inferencer.channels, skip_bad, skipped)
            if read is None:
                continue
            image, source = read
            if source != inferencer.channels:
                converted.append(name)
            if image.shape[-1] != image.shape[-2]:
                squeezed.append(f"{name} ({image.shape[-1]}x{image.shape[-2]})")
            images.append(image)
            kept.append(name)
        check_any_read(len(found), kept, skipped)
        for note in conversion_notes(converted, squeezed, len(kept), inferencer.channels, inferencer.image_size,
                                     tile_hint=False):
            log(note)
        scored = inferencer.score_arrays(images)
        vmax = inferencer.pixel_threshold_ or 1.0
        used: set[str] = set()
        for image, name, heat in zip(images, kept, scored.maps):
            save_png(heatmap_path(heat_dir, name, used), heat_overlay(image, heat, vmax))
        predicted = None if inferencer.threshold_ is None else scored.flags
        return write_predictions(out_dir, heat_dir, kept, {"score": scored.scores}, predicted, skipped)


def predict_command(argv: Sequence[str]) -> int:
    """``reconad predict --onnx MODEL IMAGES... --out DIR``: routed here by ``reconad.cli.main`` before
    anything imports torch, so it runs where PyTorch is not installed."""
    p = argparse.ArgumentParser(prog="reconad predict",
                                description="Score images with an exported model under ONNX Runtime "
                                            "(scores.csv + heatmaps), without PyTorch.")
    p.add_argument("--onnx", required=True, metavar="MODEL", help="an .onnx file written by `reconad export`")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    p.add_argument("--batch-size", type=int, default=32, help="images per ONNX Runtime run (default 32)")
    p.add_argument("--provider", action="append", default=None, metavar="NAME",
                   help="ONNX Runtime execution provider, in order of preference (default CPUExecutionProvider)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the result lines")
    args = p.parse_args(list(argv))
    try:
        inferencer = OnnxInferencer(args.onnx, providers=args.provider, batch_size=args.batch_size)
        files = predict_files(inferencer, args.images, args.out, skip_bad=args.skip_bad,
                              log=(lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr)))
    except (DataError, ValueError) as exc:
        print(f"reconad predict: error: {exc}", file=sys.stderr)
        return 2
    if "skipped" in files:
        print(f"skipped unreadable images: see {files['skipped']}")
    print(f"scores: {files['scores']}\nheatmaps: {files['heatmaps']}")
    return 0
