"""Score a benchmark's trained cells again with the first scorer's settings changed, without training: what a
scorer option gives on cells already run (the same weights, the same held-out and test images).

    python benchmarks/rescore.py OUT --method twostage --set balance=holdout [--seeds 1,2] [--json FILE]

For every cell of METHOD under ``OUT/cells`` that kept its run folder (``checkpoint.pt``; cells restored from an
archive keep ranks only and are skipped), the first scorer is built again from the cell's config with ``--set``'s
settings on top, its reference fitted on the cell's held-out images (``Scorer.fit_reference``, as when training
ends), and the test images scored. Prints each cell's image AUROC as run and rescored (scikit-learn) and each
seed's mean over the cells found; writes nothing in OUT. A cell trains the same on one machine, so a rescored
cell equals the cell run with the setting in its config (tests/test_rescore.py checks it); a benchmark's numbers
still come from cells the benchmark ran.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Any

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a setting of the first scorer), got {text!r}")
    return key, yaml.safe_load(value)


def rescore_cell(run_dir: str, settings: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The cell's image AUROC as run (its metrics.json) and with its first scorer built with ``settings``."""
    import torch
    from sklearn.metrics import roc_auc_score

    from reconad.engine.evaluate import fit_references, score_dataset
    from reconad.engine.trained import load_trained
    from reconad.engine.trainer import build_data
    from reconad.plugins import get_registry

    registry = get_registry()
    trained = load_trained(run_dir, device=device, registry=registry)
    cc = trained.config.model.scorers[0]
    spec = registry.get("scorer", cc.name)
    try:
        trained.model.scorers[0] = spec.build(**{**cc.params, **settings}).to(device)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"rescore: scorer {cc.name!r} with {settings}: {exc}") from None
    splits = build_data(trained.config, registry)
    dev = torch.device(device)
    batch = trained.config.test.batch_size          # as the run scored them
    fit_references(trained.model, splits.holdout, dev, batch)
    test = score_dataset(trained.model, splits.test, dev, batch, keep_maps=False, keep_masks=False)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as fh:
        before = json.load(fh)["image_auroc"]
    return {"run": run_dir, "image_auroc": before,
            "rescored": float(roc_auc_score(test.labels, test.image[test.names[0]]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a benchmark's --out folder")
    p.add_argument("--method", required=True, help="the suite's method whose cells are rescored")
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the first scorer (repeatable), e.g. balance=holdout")
    p.add_argument("--seeds", default=None, help="only these seeds (comma-separated)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows to FILE")
    args = p.parse_args(argv)
    seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    runs = sorted(d for d in glob.glob(os.path.join(args.out, "cells", args.method, "*", "*", "seed*"))
                  if os.path.isfile(os.path.join(d, "checkpoint.pt"))
                  and (seeds is None or int(os.path.basename(d)[4:]) in seeds))
    if not runs:
        print(f"rescore: no cell of {args.method!r} with a checkpoint under {args.out}/cells", file=sys.stderr)
        return 2
    rows = []
    for run_dir in runs:
        t0 = time.perf_counter()
        row = rescore_cell(run_dir, dict(args.settings), args.device)
        row["seed"] = int(os.path.basename(run_dir)[4:])
        rows.append(row)
        print(f"{os.path.relpath(run_dir, os.path.join(args.out, 'cells'))}: {row['image_auroc']:.4f} -> "
              f"{row['rescored']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for seed in sorted({r["seed"] for r in rows}):
        of = [r for r in rows if r["seed"] == seed]
        print(f"seed {seed}, {len(of)} cell(s): {np.mean([r['image_auroc'] for r in of]):.4f} -> "
              f"{np.mean([r['rescored'] for r in of]):.4f}")
    if args.json:
        from reconad.io import write_json

        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
