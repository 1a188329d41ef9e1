"""Scoring new images with a trained model: scores.csv and a heatmap overlay per image, at the image's own
resolution (the model's map upsampled), each image named by its path relative to the folder it was found in
(its heatmap at the same relative path under ``heatmaps/``, as a PNG)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._imagefiles import DataError, check_any_read, conversion_notes, heat_overlay, heatmap_path, heatmaps_folder, \
    image_names, read_or_skip, save_png, write_predictions
from ..data.base import resize_images
from ..model import ReconModel
from .evaluate import batch_scores, check_finite, finalize_scores
from .progress import ScoreProgress, say
from .runtime import flush_denormals

__all__ = ["image_names", "predict_images"]


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
    with heatmaps_folder(out_dir) as heat_dir, flush_denormals(device):
        return _predict(model, found, out_dir, heat_dir, channels, image_size, calibration, device, skip_bad,
                        batch_size, log, tile, overlap)


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
                read = read_or_skip(path, channels, skip_bad, skipped)
                if read is None:
                    continue
                image, source = torch.from_numpy(read[0]), read[1]
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
                    save_png(heatmap_path(heat_dir, name, used), heat_overlay(image.numpy(), heat, vmax))
    check_any_read(len(found), kept, skipped)
    for note in conversion_notes(converted, squeezed, len(kept), channels, image_size, tile_hint=not tile):
        log(note)
    final = finalize_scores(model, {n: np.asarray(v, dtype=np.float64) for n, v in image_scores.items()}, parts_of)
    threshold = calibration.get("threshold")
    predicted = None if threshold is None else final[next(iter(final))] > threshold
    return write_predictions(out_dir, heat_dir, kept, final, predicted, skipped)
