"""``reconad oled segment RUN``: the Mask Module as a segmenter (§4.5) on a trained OLED run. (Video novelty
detection, §4.4, is the core's ``reconad video RUN FRAMES`` on a run of configs/oled/video.yaml.)"""
from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_commands"]


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

    p = subparsers.add_parser("oled", help="OLED (paper 001): Mask Module segmentation")
    sub = p.add_subparsers(dest="oled_command", required=True)
    s = sub.add_parser("segment", help="pixel AUROC of MM's activation map vs the non-zero pixels (§4.5)")
    add_run_arguments(s)
    s.set_defaults(func=_cmd_segment)
