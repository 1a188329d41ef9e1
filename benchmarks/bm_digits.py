"""One-class MNIST (``digits``): train a config once per normal class, report image AUROC per class and mean.

    python benchmarks/run.py digits                                  # configs/digits.yaml, all ten classes
    python benchmarks/bm_digits.py --config configs/digits.yaml --classes 0 1 --set train.epochs=20
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from common import append_results, print_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> list[dict]:
    from reconad.config import load_config
    from reconad.engine import run

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "digits.yaml"))
    ap.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv or [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.classes:
            cfg = load_config(args.config, [*args.overrides, f"data.normal_class={c}", f"train.device={args.device}",
                                            "train.progress=false"])
            t0 = time.perf_counter()
            res = run(cfg, os.path.join(tmp, f"class{c}"), log=lambda s: None)
            rows.append({"normal_class": c, "image_auroc": res.metrics["image_auroc"],
                         "seconds": time.perf_counter() - t0})
            print(f"class {c}: image AUROC {res.metrics['image_auroc']:.4f} ({rows[-1]['seconds']:.0f} s)", flush=True)
    mean = statistics.mean(r["image_auroc"] for r in rows)
    rows.append({"normal_class": "mean", "image_auroc": mean, "seconds": sum(r["seconds"] for r in rows)})
    print_table(f"digits one-class image AUROC: {os.path.relpath(args.config, ROOT)} {' '.join(args.overrides)}", rows)
    per = " ".join(f"{r['normal_class']}:{r['image_auroc']:.3f}" for r in rows[:-1])
    append_results("digits", cfg.train.device if args.device != "auto" else "cpu",
                   f"{os.path.relpath(args.config, ROOT)} {' '.join(args.overrides)}: mean image AUROC "
                   f"{mean:.4f} ({per})")
    return rows


if __name__ == "__main__":
    main(__import__("sys").argv[1:])
