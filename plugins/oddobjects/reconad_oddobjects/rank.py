"""The data-cleaning report of ODDObjects §4.4 (Figures 6-7), run by ``reconad oddobjects rank`` (``cli.py``).

A model is trained on every selected object of a COCO annotation file (the ``coco`` dataset's ``rank``
protocol), or loaded with ``--checkpoint``, then every object is scored. The output folder gets, besides the
run's ``config.yaml`` and ``checkpoint.pt``:

- ``rank.csv``: every object, most anomalous first (rank, score, image id, annotation id, category, file,
  box, area, whether it is above the model's threshold, and the other scores);
- ``top_anomalous.png`` / ``top_normal.png``: the top-N most and least anomalous objects with their
  reconstructions, each captioned with its rank, score, image id, annotation id and category;
- ``rank.html``: both pictures, both top-N tables and the data warnings (skipped or repaired annotations).

The most anomalous objects are where mislabelled, merged or badly drawn segmentations turn up.
"""
from __future__ import annotations

import copy
import csv
import html
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from reconad.io import atomic_path, atomic_write, write_text

__all__ = ["DEFAULT_CONFIG", "RankResult", "rank_objects", "write_rank_report"]

# The paper's MemCAE (§3.2) on 256x256 objects, trained for Figures 6-7's 10000 steps; pass --config (for
# example configs/oddobjects/coco_memcae.yaml) or --set to change it.
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "oddobjects",
    "seed": 0,
    "data": {"name": "coco", "image_size": 256},
    "model": {
        "encoder": {"name": "odd_memcae", "latent_dim": 32},
        "memory": {"name": "memae", "slots": 500},
        "decoder": {"name": "odd_memcae"},
        "scorers": [{"name": "odd_score", "entropy_weight": 0.0002}],
        "objective": {"name": "odd_reconstruction", "entropy_weight": 0.0002},
    },
    "train": {"steps": 10000, "batch_size": 32, "optimizer": "adam", "lr": 0.001},
}
_DATA_KEPT = ("image_size", "channels", "holdout_fraction", "seed")   # taken from a config of another dataset


@dataclass
class RankResult:
    out_dir: str
    files: dict[str, str]
    order: list[int]              # item indices of the scored objects, most anomalous first
    scores: np.ndarray            # primary score per item (dataset order)
    skipped: list[str]


def _rank_config(raw: dict[str, Any], annotations: str, images: str, categories: str | None, skip_bad: bool,
                 overrides: Sequence[str]) -> dict[str, Any]:
    from reconad.config import apply_overrides

    raw = copy.deepcopy(raw)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if data.get("name") != "coco":
        data = {k: data[k] for k in _DATA_KEPT if k in data}
    data.update({"name": "coco", "annotations": annotations, "images": images})
    if categories:
        data["normal_categories"] = categories
    if skip_bad:
        data["skip_bad"] = True
    raw["data"] = data
    raw = apply_overrides(raw, list(overrides))
    raw["data"]["name"], raw["data"]["protocol"] = "coco", "rank"   # what this command is
    return raw


def _load_model(checkpoint: str, device: torch.device, registry: Any) -> tuple[Any, dict[str, Any], dict]:
    """(model, calibration, the run's raw config) of a finished run."""
    from reconad.config import to_dict
    from reconad.engine import load_trained

    trained = load_trained(checkpoint, device, registry)
    raw = to_dict(trained.config)
    raw.setdefault("data", {}).update({"image_size": trained.signature["image_size"],
                                       "channels": trained.signature["channels"]})
    return trained.model, trained.calibration, raw


def rank_objects(annotations: str, images: str, *, config: str | None = None, overrides: Sequence[str] = (),
                 out_dir: str | None = None, checkpoint: str | None = None, top: int = 5,
                 categories: str | None = None, device: str | None = None, skip_bad: bool = False,
                 registry: Any = None, log: Callable[[str], None] | None = None) -> RankResult:
    """Train on (or load a model for) every selected object of ``annotations``, score them all and write
    the rank report into ``out_dir``."""
    from reconad.config import ConfigError, load_raw, validate
    from reconad.engine import default_out_dir, run
    from reconad.engine.evaluate import score_dataset
    from reconad.engine.runtime import setup_runtime
    from reconad.engine.trainer import build_data
    from reconad.engine.progress import say
    from reconad.plugins import get_registry

    log = log or say    # the engine's lines: quiet under reconad -q
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"--top: expected a positive number of objects, got {top!r}")
    registry = registry or get_registry()
    dev_overrides = [f"train.device={device}"] if device else []
    if checkpoint:
        dev = setup_runtime(device or "auto").device
        model, calibration, base = _load_model(checkpoint, dev, registry)
        raw = _rank_config(base, annotations, images, categories, skip_bad, overrides)
        raw["name"] = f"{base.get('name', 'oddobjects')}-rank"
        cfg = validate(raw, registry)
        splits = build_data(cfg, registry)
        out_dir = out_dir or default_out_dir(cfg.name)
    else:
        base = load_raw(config) if config else DEFAULT_CONFIG
        raw = _rank_config(base, annotations, images, categories, skip_bad, [*overrides, *dev_overrides])
        stem = os.path.splitext(os.path.basename(config))[0] if config else "oddobjects"
        raw["name"] = f"{raw.get('name') or stem}-rank"
        cfg = validate(raw, registry)
        res = run(cfg, out_dir, test=False, registry=registry, log=log)
        if res.train is None or not res.train.calibration:
            raise ConfigError("rank: training did not finish, so there is nothing to rank")
        out_dir, model, splits = res.out_dir, res.train.model, res.train.splits
        calibration = res.train.calibration
        dev = next(model.parameters()).device
    if int(os.environ.get("RANK", "0")) != 0:       # under torchrun only the first process writes
        return RankResult(out_dir, {}, [], np.zeros(0), list(splits.skipped))
    scores = score_dataset(model, splits.test, dev, cfg.test.batch_size, keep_maps=False, keep_masks=False,
                           where="COCO objects")
    files = write_rank_report(out_dir, model=model, dataset=splits.test, scores=scores, calibration=calibration,
                              top=top, title=cfg.name, device=dev, skipped=list(splits.skipped),
                              checkpoint=checkpoint)
    order = np.argsort(-scores.primary, kind="stable").tolist()
    return RankResult(out_dir, files, order, scores.primary, list(splits.skipped))


# ------------------------------------------------------------------------------------------------ report

def _rows(dataset: Any, scores: Any, order: Sequence[int], threshold: float | None) -> list[dict[str, Any]]:
    rows = []
    for r, i in enumerate(order, 1):
        o = dataset.objects[i]
        s = float(scores.primary[i])
        rows.append({"rank": r, "score": s, "image_id": o.image_id, "annotation_id": o.annotation_id,
                     "category": o.category, "file_name": o.file_name,
                     "bbox_x": o.bbox[0], "bbox_y": o.bbox[1], "bbox_w": o.bbox[2], "bbox_h": o.bbox[3],
                     "area": o.area, "above_threshold": "" if threshold is None else int(s > threshold),
                     **{f"score_{n}": float(scores.image[n][i]) for n in scores.names[1:]}})
    return rows


def _write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if not rows:
            return
        w.writerow(list(rows[0]))
        for row in rows:
            w.writerow([f"{v:.8g}" if isinstance(v, float) else v for v in row.values()])


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)      # a scalable font when Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


@torch.no_grad()
def _grid(path: str, model: Any, dataset: Any, picks: Sequence[int], rows: list[dict[str, Any]], title: str,
          device: torch.device, columns: int = 8, tile: int = 128) -> None:
    """Objects (and, under each, the model's reconstruction) captioned with rank, score, image id, annotation
    id and category. Drawn with Pillow: a picture per run needs no plotting library."""
    from PIL import Image, ImageDraw

    was = model.training
    model.eval()
    x = torch.stack([dataset[i]["image"] for i in picks])
    recon = torch.cat([model(x[k:k + 32].to(device))["recon"].float().clamp(0, 1).cpu()
                       for k in range(0, len(picks), 32)])
    model.train(was)

    def tile_of(t: torch.Tensor) -> Image.Image:
        rgb = (t.repeat(3, 1, 1) if t.shape[0] == 1 else t[:3]).permute(1, 2, 0).numpy()
        im = Image.fromarray((rgb * 255.0).round().astype(np.uint8))
        side = max(tile, im.width)
        return im.resize((side, side), Image.NEAREST if im.width < side else Image.BILINEAR)

    side = max(tile, x.shape[-1])
    font, small = _font(14), _font(11)
    cols, pad, cap, head = min(columns, len(picks)), 8, 46, 30
    bands = -(-len(picks) // cols)
    cell_w, cell_h = side + pad, cap + 2 * side + pad
    canvas = Image.new("RGB", (pad + cols * cell_w, head + bands * cell_h + 18), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 8), title, fill="black", font=font)
    for k, row in enumerate(rows):
        b, c = divmod(k, cols)
        x0, y0 = pad + c * cell_w, head + b * cell_h
        caption = (f"#{row['rank']}  score {row['score']:.4g}\nimg {row['image_id']}  ann {row['annotation_id']}\n"
                   f"{row['category'][:22]}")
        draw.multiline_text((x0, y0), caption, fill="black", font=small, spacing=2)
        canvas.paste(tile_of(x[k]), (x0, y0 + cap))
        canvas.paste(tile_of(recon[k]), (x0, y0 + cap + side))
    draw.text((pad, canvas.height - 18), "each column: the object, then its reconstruction", fill="gray",
              font=small)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("rank", "score", "image_id", "annotation_id", "category", "file_name", "area")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(f'{r[k]:.4g}' if isinstance(r[k], float) else str(r[k]))}"
                                     f"</td>" for k in head) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{body}</table>"


def write_rank_report(out_dir: str, *, model: Any, dataset: Any, scores: Any, calibration: dict[str, Any],
                      top: int, title: str, device: torch.device, skipped: Sequence[str] = (),
                      checkpoint: str | None = None) -> dict[str, str]:
    """Write rank.csv, top_anomalous.png, top_normal.png and rank.html (each atomically); returns their paths."""
    threshold = calibration.get("threshold")
    order = np.argsort(-scores.primary, kind="stable").tolist()
    rows = _rows(dataset, scores, order, threshold)
    n = min(top, len(rows))
    files = {k: os.path.join(out_dir, f) for k, f in (("csv", "rank.csv"), ("anomalous", "top_anomalous.png"),
                                                     ("normal", "top_normal.png"), ("html", "rank.html"))}
    _write_csv(files["csv"], rows)
    _grid(files["anomalous"], model, dataset, order[:n], rows[:n],
          f"{title}: the {n} most anomalous objects (highest score first)", device)
    least = rows[::-1][:n]
    _grid(files["normal"], model, dataset, order[::-1][:n], least,
          f"{title}: the {n} most normal objects (lowest score first)", device)
    cats: dict[str, int] = {}
    for r in rows:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    notes = list(getattr(dataset, "notes", []))
    lis = lambda xs: "<ul>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in xs) + "</ul>"  # noqa: E731
    source = f"model from {html.escape(checkpoint)}" if checkpoint else "model trained on these objects"
    write_text(files["html"], f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ODDObjects rank: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>ODDObjects rank: {html.escape(title)}</h1>
<p>{len(rows)} objects ({html.escape(', '.join(f'{k}: {v}' for k, v in sorted(cats.items())))}) scored by the
{source}; higher = more anomalous. The most anomalous objects are where mislabelled, merged or badly drawn
segmentations turn up (ODDObjects §4.4). Every object with its score: <a href="rank.csv">rank.csv</a>.
Threshold (scores above it are called anomalous): {html.escape('n/a' if threshold is None else f'{threshold:.4g}')}.</p>
<h2>The {n} most anomalous objects</h2><img src="top_anomalous.png" alt="most anomalous objects">{_table(rows[:n])}
<h2>The {n} most normal objects</h2><img src="top_normal.png" alt="most normal objects">{_table(least)}
<h2>Data warnings</h2>{lis(notes) if notes else '<p>none</p>'}
<h2>Skipped images</h2>{lis(skipped) if skipped else '<p>none</p>'}
</body></html>
""")
    return files
