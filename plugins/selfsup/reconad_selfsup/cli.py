"""``reconad selfsup evaluate RUN``: the paper's connected-component area rule on a finished run."""
from __future__ import annotations

import argparse
import json
import os

__all__ = ["add_commands"]


def _evaluate(args: argparse.Namespace) -> int:
    from reconad.commands import out_folder
    from reconad.io import write_json

    from .evaluate import AREA_RULE_FILE, evaluate_run

    result = evaluate_run(args.run, min_area=args.min_area, min_area_fraction=args.min_area_fraction,
                          device=args.device, write=False)
    path = os.path.join(out_folder(args), AREA_RULE_FILE)
    write_json(path, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"pixel threshold {result['pixel_threshold']:.6g}, min area {result['min_area']} px "
              f"(fitted on {result['n_holdout']} held-out normal images)")
        for level in ("image", "pixel"):
            if f"{level}_tpr" in result:
                vals = ", ".join(f"{k.upper()} {_fmt(result[f'{level}_{k}'])}" for k in ("tpr", "tnr", "mean", "f1"))
                print(f"{level:5s}: {vals}")
        print(f"written to {path}")
    return 0


def _fmt(v: object) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from reconad.commands import add_run_arguments

    p = subparsers.add_parser("selfsup", help="paper 004 (self-supervised AE) tools")
    sub = p.add_subparsers(dest="selfsup_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("evaluate", help="area-rule detection metrics (image / pixel TPR, TNR, mean, F1) of a run")
    add_run_arguments(e, out="write area_rule.json here (default: the run folder)")
    e.add_argument("--min-area", type=int, default=None, help="minimum anomalous component area in pixels")
    e.add_argument("--min-area-fraction", type=float, default=0.005,
                   help="minimum area as a fraction of the image (when --min-area is not given; default 0.005)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)
