"""``reconad oddobjects rank``: the data-cleaning report of ODDObjects §4.4 (``reconad_oddobjects.rank``)."""
from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def _cmd_rank(args: argparse.Namespace) -> int:
    from .rank import rank_objects

    res = rank_objects(args.annotations, args.images, config=args.config, overrides=args.overrides,
                       out_dir=args.out, checkpoint=args.run, top=args.top, categories=args.categories,
                       device=args.device, skip_bad=args.skip_bad)
    if res.skipped:
        print(f"skipped {len(res.skipped)} image(s):")
        for line in res.skipped:
            print(f"  {line}")
    if res.files:
        print(f"ranked {len(res.scores)} objects; every score in {res.files['csv']}")
        print(f"report: {res.files['html']}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from reconad.commands import add_run_arguments

    group = subparsers.add_parser("oddobjects",
                                  help="ODDObjects (paper 000) tools: rank COCO objects by anomaly score")
    sub = group.add_subparsers(dest="oddobjects_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "rank", help="train on (or load a model for) every object of a COCO file and rank them: rank.csv, "
                     "top_anomalous.png, top_normal.png, rank.html",
        description="Rank the objects of a COCO annotation file by anomaly score (ODDObjects §4.4) to find "
                    "mislabelled or merged segmentations.")
    p.add_argument("--annotations", required=True, help="COCO annotation JSON file")
    p.add_argument("--images", required=True, help="folder of the images the annotation file names")
    p.add_argument("--config", default=None,
                   help="YAML config for the model and training (default: the paper's MemCAE, 256x256, "
                        "10000 steps); its data section may set coco options")
    p.add_argument("--categories", default=None, metavar="A,B",
                   help="rank only these categories (names or ids, comma-separated; default: the config's "
                        "data.normal_categories / data.categories, else every category)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.steps=500 (repeatable)")
    add_run_arguments(p, optional=True, out="output folder (default: runs/<config>-rank-<time>/)")
    p.add_argument("--top", type=int, default=5, help="objects in each picture (default 5, as Figures 6-7)")
    p.add_argument("--skip-bad", action="store_true", help="skip missing or unreadable images and list them")
    p.set_defaults(func=_cmd_rank)
