"""``reconad oled video`` and ``reconad oled segment``: OLED's video novelty detection (§4.4) and the Mask
Module as a segmenter (§4.5), on a trained run."""
from __future__ import annotations

import argparse
import csv
import os
from typing import Any

import torch

__all__ = ["add_commands", "load_run"]


def load_run(checkpoint: str, device: str | torch.device = "cpu") -> tuple[Any, torch.nn.Module, dict[str, Any]]:
    """(config, model in eval mode, signature) of a finished run folder or checkpoint.pt."""
    from reconad.config import validate
    from reconad.engine.checkpoint import load_checkpoint
    from reconad.model import build_model
    from reconad.plugins import get_registry

    state = load_checkpoint(checkpoint, map_location=device)
    registry = get_registry()
    cfg = validate(state["config"], registry)
    sig = state["signature"]
    model, _ = build_model(cfg.model, registry, sig["channels"], sig["image_size"])
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval(), sig


def _out_dir(args: argparse.Namespace) -> str:
    ckpt = args.checkpoint
    base = ckpt if os.path.isdir(ckpt) else os.path.dirname(os.path.abspath(ckpt))
    out = args.out or base
    os.makedirs(out, exist_ok=True)
    return out


def _cmd_video(args: argparse.Namespace) -> int:
    from reconad.data.video import read_frame_labels, read_frames
    from reconad.io import atomic_write, write_json

    from .evaluate import score_video, video_metrics

    _, model, sig = load_run(args.checkpoint, args.device)
    frames, names = read_frames(args.frames, size=tuple(args.size) if args.size else None,
                                channels=sig["channels"])
    scores = score_video(model, frames, patch=args.patch, stride=args.stride, image_size=sig["image_size"],
                         device=args.device)
    out = _out_dir(args)
    path = os.path.join(out, "frame_scores.csv")
    labels = read_frame_labels(args.labels, len(names)) if args.labels else None
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "label", *[f"s_{k}" for k in scores]])
        for i, n in enumerate(names):
            w.writerow([n, "" if labels is None else int(labels[i]), *[f"{float(v[i]):.8g}" for v in scores.values()]])
    print(f"frame scores: {path}")
    if labels is not None:
        metrics = video_metrics(scores, labels)
        write_json(os.path.join(out, "video_metrics.json"), {"frames": len(names), "patch": args.patch,
                                                             "stride": args.stride or args.patch, **metrics})
        for k, m in metrics.items():
            print(f"  s_{k:5s} frame AUROC {m['auroc']:.4f}  EER {m['eer']:.4f}")
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from reconad.engine.trainer import build_data
    from reconad.io import write_json
    from reconad.plugins import get_registry

    from .evaluate import segmentation_auroc

    cfg, model, _ = load_run(args.checkpoint, args.device)
    splits = build_data(cfg, get_registry())
    res = segmentation_auroc(model, splits.test, device=args.device)
    write_json(os.path.join(_out_dir(args), "segmentation.json"), res)
    for k, v in res.items():
        print(f"  MM segmentation pixel AUROC ({k}): {'n/a' if v is None else f'{v:.4f}'}")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("oled", help="OLED (paper 001): video novelty detection, Mask Module segmentation")
    sub = p.add_subparsers(dest="oled_command", required=True)
    v = sub.add_parser("video", help="frame-level scores (max over 30x30 patches), AUROC and EER")
    v.add_argument("--checkpoint", required=True, help="a trained OLED run folder or checkpoint.pt")
    v.add_argument("--frames", required=True, help="a folder of frame images or a video file")
    v.add_argument("--labels", default=None, help="per-frame 0/1 labels (text/CSV, one per line, or .npy)")
    v.add_argument("--patch", type=int, default=30, help="patch side (default 30, as the paper)")
    v.add_argument("--stride", type=int, default=None, help="patch stride (default: the patch side)")
    v.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="resize frames first")
    v.add_argument("--out", default=None, help="output folder (default: the run folder)")
    v.add_argument("--device", default="cpu")
    v.set_defaults(func=_cmd_video)
    s = sub.add_parser("segment", help="pixel AUROC of MM's activation map vs the non-zero pixels (§4.5)")
    s.add_argument("--checkpoint", required=True, help="a trained OLED run folder or checkpoint.pt")
    s.add_argument("--out", default=None, help="output folder (default: the run folder)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_cmd_segment)
