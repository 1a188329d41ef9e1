"""Scoring new images with a trained model: scores.csv and a heatmap overlay per image, at the image's own
resolution (the model's map upsampled), each image named by its path relative to the folder it was found in
(its heatmap at the same relative path under ``heatmaps/``, as a PNG)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import DataError, resize_images
from ..data.folder import _GREY_MODES, image_extensions, read_image
from ..io import atomic_path, write_text
from ..model import ReconModel
from .evaluate import ScoreSet, batch_scores, check_finite, finalize_scores
from .progress import ScoreProgress, say
from .report import heat_overlay, write_scores_csv

__all__ = ["image_names", "predict_images"]


def image_names(inputs: list[str]) -> list[tuple[str, str]]:
    """``(path, name)`` of every image among ``inputs`` (files, or folders searched recursively), in a stable
    order. The name identifies the image in outputs: its path relative to the folder given (prefixed with that
    folder's name when several inputs are given), or the file as given."""
    exts = image_extensions()
    found: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            prefix = p.resolve().name if len(inputs) > 1 else ""
            found += [(str(f), os.path.join(prefix, str(f.relative_to(p)))) for f in sorted(p.rglob("*"))
                      if f.is_file() and f.suffix.lower() in exts and not f.name.startswith(".")]
        elif p.is_file():
            found.append((str(p), item))
        else:
            raise DataError(f"{item!r} is neither an image file nor a folder")
    if not found:
        raise DataError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(exts)[:8])}, ...)")
    return found


def _heatmap_path(heat_dir: str, name: str, used: set[str]) -> str:
    """``heatmaps/<the image's name>.png``: the input's folders mirrored (``scratch/006.png`` and
    ``good/006.png`` stay apart); a name that leaves the folder (absolute, ``..``) keeps its file name only;
    a clash (``a.jpg`` beside ``a.png``) gets ``_2``, ``_3``..."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        rel = Path(rel.name)
    base, n = rel.with_suffix(""), 1
    candidate = f"{base}.png"
    while candidate in used:
        n += 1
        candidate = f"{base}_{n}.png"
    used.add(candidate)
    return os.path.join(heat_dir, candidate)


def _save_png(path: str, rgb: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")


def _file_channels(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return 1 if im.mode in _GREY_MODES else 3


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


@torch.no_grad()
def predict_images(model: ReconModel, inputs: list[str], out_dir: str, *, channels: int, image_size: int,
                   calibration: dict[str, Any], device: torch.device, skip_bad: bool = False,
                   batch_size: int = 32, log: Callable[[str], None] = say, tile: int | None = None,
                   overlap: float = 0.25) -> dict[str, str]:
    """Score the images ``inputs`` names: ``scores.csv`` and ``heatmaps/*.png``, each overlay at its image's
    own size. Images are squeezed to the model's square input, or with ``tile`` cut into ``tile``-pixel
    squares overlapping by ``overlap`` of a tile, each scored alone: the image's score is its highest tile's,
    its map the tiles' maps stitched (overlaps averaged), so small defects on large images keep their pixels.
    ``log`` says once when an aspect ratio is changed and when colours were converted to the model's channels."""
    if tile is not None and tile < 1:
        raise DataError(f"--tile: expected a tile size in pixels >= 1, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise DataError(f"--tile-overlap: expected a fraction of a tile in [0, 1), got {overlap}")
    found = image_names(inputs)
    model.eval()
    heat_dir = os.path.join(out_dir, "heatmaps")
    made = not os.path.isdir(heat_dir)
    os.makedirs(heat_dir, exist_ok=True)
    try:
        return _predict(model, found, out_dir, heat_dir, channels, image_size, calibration, device, skip_bad,
                        batch_size, log, tile, overlap)
    except BaseException:
        if made:   # a failed predict leaves no half-filled heatmaps folder
            shutil.rmtree(heat_dir, ignore_errors=True)
        raise


def _windows(image: torch.Tensor, tile: int | None, overlap: float) -> list[tuple[int, int, int, int]]:
    """``(y, x, h, w)`` of the units of ``image``: itself whole, or ``tile``-pixel squares overlapping by about
    ``overlap`` of a tile, the last ones flush with the far edges (a side shorter than ``tile`` is one span)."""
    height, width = image.shape[-2:]
    if tile is None:
        return [(0, 0, height, width)]

    def spans(n: int) -> list[tuple[int, int]]:
        if n <= tile:
            return [(0, n)]
        stride = max(1, round(tile * (1.0 - overlap)))
        starts = list(range(0, n - tile + 1, stride))
        if starts[-1] != n - tile:
            starts.append(n - tile)
        return [(s, tile) for s in starts]

    return [(y, x, h, w) for y, h in spans(height) for x, w in spans(width)]


def _predict(model: ReconModel, found: list[tuple[str, str]], out_dir: str, heat_dir: str, channels: int,
             image_size: int, calibration: dict[str, Any], device: torch.device, skip_bad: bool, batch_size: int,
             log: Callable[[str], None], tile: int | None, overlap: float) -> dict[str, str]:
    vmax = calibration.get("pixel_threshold") or 1.0
    image_scores: dict[str, list[float]] = {}
    parts_of: dict[str, list[str]] = {}
    kept: list[str] = []
    skipped: list[str] = []
    converted: list[str] = []
    squeezed: list[str] = []
    used: set[str] = set()    # heatmap files written
    with ScoreProgress("images", len(found)) as bar:
        for start in range(0, len(found), batch_size):
            originals, names = [], []
            for path, name in found[start:start + batch_size]:
                try:
                    image = read_image(path, channels)
                    source = _file_channels(path)
                except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
                    if not skip_bad:
                        raise DataError(f"cannot read image {path}: {exc}; fix or remove it, "
                                        "or pass --skip-bad") from exc
                    skipped.append(f"{path}: {exc}")
                    continue
                if source != channels:
                    converted.append(name)
                if image.shape[-1] != image.shape[-2] and (tile is None or min(image.shape[-2:]) < tile):
                    squeezed.append(f"{name} ({image.shape[-1]}x{image.shape[-2]})")
                originals.append(image)
                names.append(name)
            bar.update(len(found[start:start + batch_size]))
            if not originals:
                continue
            # the units the model sees: each image whole, or its overlapping tiles; each squeezed to the model's input
            units = [(j, y, x, h, w) for j, im in enumerate(originals) for y, x, h, w in _windows(im, tile, overlap)]
            unit_scores: dict[str, list[float]] = {}
            unit_maps: list[torch.Tensor] = []
            for u in range(0, len(units), batch_size):
                chunk = units[u:u + batch_size]
                x = torch.stack([resize_images(originals[j][:, y:y + h, x_:x_ + w].unsqueeze(0), image_size)[0]
                                 for j, y, x_, h, w in chunk])
                check_finite(x, [names[c[0]] for c in chunk], "predict")
                scores, maps = batch_scores(model, model(x.to(device)), parts_of)
                for key, v in scores.items():
                    unit_scores.setdefault(key, []).extend(v.double().cpu().tolist())
                if maps is not None:
                    unit_maps += list(maps.float().cpu())
            for j, (image, name) in enumerate(zip(originals, names)):
                mine = [i for i, unit in enumerate(units) if unit[0] == j]
                for key, v in unit_scores.items():   # an image is as anomalous as its most anomalous tile
                    image_scores.setdefault(key, []).append(max(v[i] for i in mine))
                kept.append(name)
                if unit_maps:   # each unit's map, bilinear up to its own size, overlaps averaged
                    total = torch.zeros(image.shape[-2:])
                    count = torch.zeros(image.shape[-2:])
                    for i in mine:
                        _, y, x_, h, w = units[i]
                        total[y:y + h, x_:x_ + w] += F.interpolate(unit_maps[i][None, None], size=(h, w),
                                                                   mode="bilinear", align_corners=False)[0, 0]
                        count[y:y + h, x_:x_ + w] += 1
                    heat = (total / count).numpy()
                    heat_path = _heatmap_path(heat_dir, name, used)
                    os.makedirs(os.path.dirname(heat_path), exist_ok=True)
                    _save_png(heat_path, heat_overlay(image.numpy(), heat, vmax))
    if not kept:
        raise DataError(f"none of the {len(found)} image(s) could be read: {'; '.join(skipped[:3])}")
    kind = {1: "grey", 3: "RGB"}
    if converted:
        log(f"predict: the model takes {kind.get(channels, channels)} images; {len(converted)} of {len(kept)} "
            f"image(s) were converted to {kind.get(channels, channels)} ({_examples(converted)})")
    if squeezed:
        log(f"predict: warning: {len(squeezed)} of {len(kept)} image(s) are not square ({_examples(squeezed)}); "
            f"the model sees each squeezed to {image_size}x{image_size}, which distorts its aspect ratio; "
            f"the heatmaps are stretched back to each image's own size"
            + ("" if tile else "; --tile SIZE scores square tiles instead"))
    final = finalize_scores(model, {n: np.asarray(v, dtype=np.float64) for n, v in image_scores.items()}, parts_of)
    scores = ScoreSet(list(final), final, None,
                      np.full(len(kept), -1, np.int64), None, kept, [""] * len(kept))
    csv_path = os.path.join(out_dir, "scores.csv")
    write_scores_csv(csv_path, scores, calibration.get("threshold"))
    files = {"scores": csv_path, "heatmaps": heat_dir}
    if skipped:
        skipped_path = os.path.join(out_dir, "skipped.txt")
        write_text(skipped_path, "\n".join(skipped) + "\n")
        files["skipped"] = skipped_path
    return files
