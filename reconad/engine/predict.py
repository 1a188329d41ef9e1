"""Scoring new images with a trained model: scores.csv and a heatmap overlay per image."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.base import DataError, resize_images
from ..data.folder import image_extensions, read_image
from ..io import atomic_path, write_text
from ..model import ReconModel
from .evaluate import ScoreSet, batch_scores, check_finite, finalize_scores
from .report import heat_overlay, write_scores_csv

__all__ = ["list_images", "predict_images"]


def list_images(inputs: list[str]) -> list[str]:
    """Image files among ``inputs`` (files, or folders searched recursively), in a stable order."""
    exts = image_extensions()
    found: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(str(f) for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in exts and not f.name.startswith("."))
        elif p.is_file():
            found.append(str(p))
        else:
            raise DataError(f"{item!r} is neither an image file nor a folder")
    if not found:
        raise DataError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(exts)[:8])}, ...)")
    return found


def _save_png(path: str, rgb: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")


@torch.no_grad()
def predict_images(model: ReconModel, inputs: list[str], out_dir: str, *, channels: int, image_size: int,
                   calibration: dict[str, Any], device: torch.device, skip_bad: bool = False,
                   batch_size: int = 32) -> dict[str, str]:
    paths = list_images(inputs)
    images, kept, skipped = [], [], []
    for p in paths:
        try:
            images.append(resize_images(read_image(p, channels).unsqueeze(0), image_size)[0])
            kept.append(p)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
            if not skip_bad:
                raise DataError(f"cannot read image {p}: {exc}; fix or remove it, or pass --skip-bad") from exc
            skipped.append(f"{p}: {exc}")
    if not kept:
        raise DataError(f"none of the {len(paths)} image(s) could be read: {'; '.join(skipped[:3])}")
    model.eval()
    heat_dir = os.path.join(out_dir, "heatmaps")
    os.makedirs(heat_dir, exist_ok=True)
    vmax = calibration.get("pixel_threshold") or 1.0
    image_scores: dict[str, list[float]] = {}
    parts_of: dict[str, list[str]] = {}
    for start in range(0, len(kept), batch_size):
        x = torch.stack(images[start:start + batch_size])
        check_finite(x, kept[start:start + batch_size], "predict")
        scores, maps = batch_scores(model, model(x.to(device)), parts_of)
        for name, v in scores.items():
            image_scores.setdefault(name, []).extend(v.double().cpu().tolist())
        maps = maps.float().cpu().numpy() if maps is not None else None
        for j in range(x.shape[0]):
            idx = start + j
            if maps is not None:
                stem = f"{idx:05d}_{Path(kept[idx]).stem}"
                _save_png(os.path.join(heat_dir, f"{stem}.png"), heat_overlay(x[j].numpy(), maps[j], vmax))
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
