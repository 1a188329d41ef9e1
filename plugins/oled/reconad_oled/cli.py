"""``reconad oled segment RUN``: the Mask Module as a segmenter (§4.5) on a trained OLED run; ``reconad oled
video RUN FRAMES``: video novelty detection (§4.4)."""
from __future__ import annotations

import argparse
import csv
import os
from typing import Any

__all__ = ["add_commands"]


def _cmd_video(args: argparse.Namespace) -> int:
    from reconad.commands import load_run, out_folder
    from reconad.data.video import read_frame_labels, read_frames
    from reconad.io import atomic_write, write_json

    from .evaluate import score_video, video_metrics

    trained = load_run(args)
    sig = trained.signature
    frames, names = read_frames(args.frames, size=tuple(args.size) if args.size else None,
                                channels=sig["channels"])
    scores = score_video(trained.model, frames, patch=args.patch, stride=args.stride, image_size=sig["image_size"],
                         device=next(trained.model.parameters()).device)
    out = out_folder(args)
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
    from reconad.commands import load_run, out_folder
    from reconad.engine.trainer import build_data
    from reconad.io import write_json
    from reconad.plugins import get_registry

    from .evaluate import segmentation_auroc

    trained = load_run(args)
    splits = build_data(trained.config, get_registry())
    res = segmentation_auroc(trained.model, splits.test, device=next(trained.model.parameters()).device)
    write_json(os.path.join(out_folder(args), "segmentation.json"), res)
    for k, v in res.items():
        print(f"  MM segmentation pixel AUROC ({k}): {'n/a' if v is None else f'{v:.4f}'}")
    return 0


def add_commands(subparsers: Any) -> None:
    from reconad.commands import add_run_arguments

    p = subparsers.add_parser("oled", help="OLED (paper 001): video novelty detection, Mask Module segmentation")
    sub = p.add_subparsers(dest="oled_command", required=True)
    v = sub.add_parser("video", help="frame-level scores (max over 30x30 patches), AUROC and EER")
    add_run_arguments(v)
    v.add_argument("frames", help="a folder of frame images or a video file")
    v.add_argument("--labels", default=None, help="per-frame 0/1 labels (text/CSV, one per line, or .npy)")
    v.add_argument("--patch", type=int, default=30, help="patch side (default 30, as the paper)")
    v.add_argument("--stride", type=int, default=None, help="patch stride (default: the patch side)")
    v.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="resize frames first")
    v.set_defaults(func=_cmd_video)
    s = sub.add_parser("segment", help="pixel AUROC of MM's activation map vs the non-zero pixels (§4.5)")
    add_run_arguments(s)
    s.set_defaults(func=_cmd_segment)
