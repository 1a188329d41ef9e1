"""Image files without PyTorch: which files are images, listing them, reading them to numpy arrays, and the
files ``reconad predict`` writes (scores.csv, heatmap overlays). Shared by the PyTorch path (reconad.data,
reconad._inputs, reconad.engine.predict) and the ONNX Runtime inferencer (reconad.deploy.inferencer), so both
read and write images identically; nothing here imports torch."""
from __future__ import annotations

import contextlib
import csv
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .io import atomic_path, atomic_write, write_text

__all__ = ["GREY_MODES", "DataError", "array_images", "check_any_read", "check_values", "conversion_notes", "file_channels", "heat_overlay", "heatmap_path", "heatmaps_folder",
           "image_extensions", "image_names", "read_array", "read_or_skip", "save_png", "to_channels_array", "to_rgb", "write_predictions", "write_score_rows"]

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}     # 16-bit grey (Pillow opens it as I or I;16)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)   # ITU-R 601, as Pillow's "L"


class DataError(ValueError):
    """A dataset cannot be built from the given settings or files; the message says what to do."""


def image_extensions() -> set[str]:
    """Lower-case file extensions Pillow can open (other files, and hidden ones, are ignored)."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


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


def to_channels_array(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, C, H, W) float32 with C in {1, 3} -> ``channels``: grey is repeated, RGB -> ITU-R 601 luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    if c == 3 and channels == 1:
        return (images * _LUMA.reshape(1, 3, 1, 1)).sum(1, keepdims=True, dtype=np.float32)
    raise DataError(f"cannot convert {c}-channel images to {channels} channels (expected 1 or 3)")


def read_array(path: str | Path, channels: int) -> np.ndarray:
    """(channels, H, W) float32 in [0, 1] at the file's own size (grey, RGB, alpha, palette, 16-bit)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in _WIDE_MODES:
            arr = np.asarray(im, dtype=np.float32) / 65535.0
        elif im.mode == "F":
            arr = np.asarray(im, dtype=np.float32)
        else:
            arr = np.asarray(im.convert("L" if im.mode in GREY_MODES else "RGB"), dtype=np.float32) / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(to_channels_array(arr[None], channels)[0])


def check_values(a: np.ndarray, what: str) -> None:
    """Floats must be finite and in [0, 1]; the error names how many are not and where the first is."""
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{what}: {int(bad.sum())} value(s) are NaN or inf (the first at index {first}); "
                        "images must be finite")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{what}: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; divide "
                        "8-bit images by 255 or pass them as uint8")


def array_images(x: np.ndarray) -> tuple[np.ndarray, str]:
    """A numpy X, (N, H, W) or (N, H, W, C) of uint8 or floats in [0, 1] -> ((N, C, H, W) float32 in [0, 1],
    its description for messages); anything else is a ``DataError`` naming the shape and what was expected."""
    what = f"numpy array {tuple(x.shape)} {x.dtype}"
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        hint = ""
        if x.ndim == 2:
            hint = "; one image? pass X[None]"
        elif x.ndim == 4 and x.shape[1] in (1, 3):
            hint = "; channels first? pass X.transpose(0, 2, 3, 1)"
        raise DataError(f"X: expected images (N, H, W) or (N, H, W, C) with C = 1 or 3, got a {what}{hint}")
    if x.shape[0] == 0:
        raise DataError(f"X is empty ({what}): expected at least one image")
    if x.dtype != np.uint8 and np.issubdtype(x.dtype, np.floating):
        check_values(x, f"X ({what})")        # before reshaping: the index is in X's own coordinates
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype == np.uint8:
        arr = x.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        arr = x.astype(np.float32)
    else:
        raise DataError(f"X: expected uint8 images or floats in [0, 1], got dtype {x.dtype} ({what})")
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2)), what


def file_channels(path: str | Path) -> int:
    """1 for a grey image file, 3 for colour (from the header)."""
    from PIL import Image

    with Image.open(path) as im:
        return 1 if im.mode in GREY_MODES else 3


# --- what ``reconad predict`` writes


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3)."""
    img = np.clip(image, 0, 1)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    return img.transpose(1, 2, 0)


@contextlib.contextmanager
def heatmaps_folder(out_dir: str) -> Iterator[str]:
    """``out_dir/heatmaps``, created; a failed predict that made it removes it again (no half-filled folder)."""
    heat_dir = os.path.join(out_dir, "heatmaps")
    made = not os.path.isdir(heat_dir)
    os.makedirs(heat_dir, exist_ok=True)
    try:
        yield heat_dir
    except BaseException:
        if made:
            shutil.rmtree(heat_dir, ignore_errors=True)
        raise


def read_or_skip(path: str, channels: int, skip_bad: bool, skipped: list[str]) -> tuple[np.ndarray, int] | None:
    """``(image (channels, H, W), the file's own channels)``; an unreadable file is a ``DataError`` naming it,
    or with ``skip_bad`` None and ``"path: reason"`` added to ``skipped``."""
    try:
        return read_array(path, channels), file_channels(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure: name the file
        if not skip_bad:
            raise DataError(f"cannot read image {path}: {exc}; fix or remove it, or pass --skip-bad") from exc
        skipped.append(f"{path}: {exc}")
        return None


def check_any_read(n_found: int, kept: list[str], skipped: list[str]) -> None:
    """None of the ``n_found`` images readable (all skipped) is a ``DataError`` naming the first reasons."""
    if not kept:
        raise DataError(f"none of the {n_found} image(s) could be read: {'; '.join(skipped[:3])}")


def write_predictions(out_dir: str, heat_dir: str, names: list[str], scores: dict[str, np.ndarray],
                      predicted: np.ndarray | None, skipped: list[str]) -> dict[str, str]:
    """scores.csv (and skipped.txt when files were skipped) in ``out_dir``: the files ``reconad predict``
    reports, by name."""
    csv_path = os.path.join(out_dir, "scores.csv")
    write_score_rows(csv_path, names, scores, predicted)
    files = {"scores": csv_path, "heatmaps": heat_dir}
    if skipped:
        files["skipped"] = os.path.join(out_dir, "skipped.txt")
        write_text(files["skipped"], "\n".join(skipped) + "\n")
    return files


def heat_overlay(image: np.ndarray, heat: np.ndarray, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(H, W)`` anomaly map (scaled by ``vmax``, the held-out normal pixel threshold) over ``image``."""
    from matplotlib import colormaps

    norm = np.clip(heat / max(vmax, 1e-12) / 2.0, 0, 1)  # the threshold sits mid-scale
    colour = colormaps["jet"](norm)[..., :3]
    return (1 - alpha) * to_rgb(image) + alpha * colour


def heatmap_path(heat_dir: str, name: str, used: set[str]) -> str:
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


def save_png(path: str, rgb: np.ndarray) -> None:
    """An (H, W, 3) float image in [0, 1] as an 8-bit PNG, written atomically (its folder created)."""
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")


def write_score_rows(path: str, paths: Sequence[str], scores: dict[str, np.ndarray],
                     predicted: np.ndarray | None, labels: np.ndarray | None = None,
                     defects: Sequence[str] | None = None) -> None:
    """scores.csv: ``path,score,label,defect,predicted`` then one ``score_<name>`` column per scorer after the
    first (``scores`` is ordered, the primary first); ``predicted`` 0/1 or blank without a threshold, ``label``
    blank where unknown (< 0)."""
    names = list(scores)
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "score", "label", "defect", "predicted", *[f"score_{n}" for n in names[1:]]])
        for i, p in enumerate(paths):
            label = "" if labels is None or labels.size == 0 or labels[i] < 0 else int(labels[i])
            w.writerow([p, f"{float(scores[names[0]][i]):.8g}", label, defects[i] if defects else "",
                        "" if predicted is None else int(predicted[i]),
                        *[f"{float(scores[n][i]):.8g}" for n in names[1:]]])


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def conversion_notes(converted: list[str], squeezed: list[str], n_kept: int, channels: int, image_size: int,
                     tile_hint: bool = True) -> list[str]:
    """What ``reconad predict`` says once about images converted to the model's channels and non-square
    images squeezed to its square input (``squeezed`` entries: ``"name (WxH)"``)."""
    kind = {1: "grey", 3: "RGB"}.get(channels, str(channels))
    notes = []
    if converted:
        notes.append(f"predict: the model takes {kind} images; {len(converted)} of {n_kept} image(s) were "
                     f"converted to {kind} ({_examples(converted)})")
    if squeezed:
        notes.append(f"predict: warning: {len(squeezed)} of {n_kept} image(s) are not square "
                     f"({_examples(squeezed)}); the model sees each squeezed to {image_size}x{image_size}, which "
                     f"distorts its aspect ratio; the heatmaps are stretched back to each image's own size"
                     + ("; --tile SIZE scores square tiles instead" if tile_hint else ""))
    return notes
