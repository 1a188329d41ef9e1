"""ODDObjects (paper 000) on one-class MNIST (``digits``): AE, CAE, CVAE and MemCAE, mean image AUROC per model.

Trains ``configs/oddobjects/<model>.yaml`` once per normal class, prints a table, appends a row to
benchmarks/RESULTS.md and rewrites the results table in plugins/oddobjects/README.md (rows of models not run
this time are kept).

    python plugins/oddobjects/benchmarks/bm_oddobjects.py            # all four models, ten classes, 100 epochs
    python plugins/oddobjects/benchmarks/bm_oddobjects.py --models memcae --epochs 100
    python plugins/oddobjects/benchmarks/bm_oddobjects.py --models cae cvae --epochs 20 --classes 0 1 2
    python plugins/oddobjects/benchmarks/bm_oddobjects.py --models memcae --jobs 2   # two classes at a time
    python plugins/oddobjects/benchmarks/bm_oddobjects.py --quick    # 1 epoch, classes 0 and 1: a smoke test
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

# this script lives in plugins/oddobjects/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, device_name, print_table, write_readme_section  # noqa: E402

README = os.path.join(ROOT, "plugins", "oddobjects", "README.md")
MODELS = ("ae", "cae", "cvae", "memcae")
BEGIN, END = "<!-- bm_oddobjects:begin -->", "<!-- bm_oddobjects:end -->"


def _table_rows(text: str) -> dict[str, str]:
    """The README's current result rows by model (the first cell), so a partial run keeps the others."""
    start, stop = text.find(BEGIN), text.find(END)
    rows: dict[str, str] = {}
    if start < 0 or stop < 0:
        return rows
    for line in text[start:stop].splitlines():
        m = re.match(r"\|\s*(\w+)\s*\|", line)
        if m and m.group(1).lower() in MODELS:
            rows[m.group(1).lower()] = line
    return rows


def write_readme(results: dict[str, dict], command: str, device: str) -> None:
    """Rewrite the results section of the plugin README between the marker comments."""
    if not os.path.exists(README):
        print(f"no {README}: results section not written", file=sys.stderr)
        return
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    if BEGIN not in text or END not in text:
        print(f"{README} has no {BEGIN} / {END} markers: results section not written", file=sys.stderr)
        return
    rows = _table_rows(text)
    stamp = f"{time.strftime('%Y-%m-%d', time.gmtime())}, {device}, torch {torch.__version__}, commit {commit()}"
    for model, r in results.items():
        per = " ".join(f"{c}:{a:.3f}" for c, a in r["per_class"].items())
        rows[model] = (f"| {model} | {r['mean']:.4f} | {r['epochs']} | {len(r['per_class'])} | {per} | "
                       f"{r['seconds'] / 60:.0f} | `{command}` ({stamp}) |")
    table = ["| model | mean image AUROC | epochs | classes | per class | minutes | command (date, device, torch, commit) |",
             "|---|---|---|---|---|---|---|"] + [rows[m] for m in MODELS if m in rows]
    write_readme_section(README, f"{BEGIN}\n" + "\n".join(table) + f"\n{END}", BEGIN, END)


def _run_one(path: str, overrides: list[str], out_dir: str) -> tuple[float, int, float]:
    """Train and test one config: (image AUROC, epochs, seconds). Module-level so worker processes can run it."""
    from reconad.config import load_config
    from reconad.engine import run

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = load_config(path, overrides)
    t0 = time.perf_counter()
    res = run(cfg, out_dir, log=lambda s: None)
    return float(res.metrics["image_auroc"]), cfg.train.epochs, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", choices=MODELS, default=list(MODELS))
    ap.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs for every model (default: the configs')")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="classes trained at the same time (one process each)")
    ap.add_argument("--quick", action="store_true", help="1 epoch on classes 0 and 1; writes no results")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the plugin README's table")
    args = ap.parse_args(argv if argv is not None else [])
    if args.quick:
        args.epochs, args.classes = 1, [0, 1]
    command = "python plugins/oddobjects/benchmarks/bm_oddobjects.py " + " ".join(argv or [])
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for model in args.models:
            path = os.path.join(ROOT, "configs", "oddobjects", f"{model}.yaml")
            t_model = time.perf_counter()
            jobs = {}
            for c in args.classes:
                over = [*args.overrides, f"data.normal_class={c}", f"train.device={args.device}", "train.progress=false"]
                if args.epochs is not None:
                    over.append(f"train.epochs={args.epochs}")
                out_dir = os.path.join(tmp, f"{model}-{c}")
                jobs[c] = pool.submit(_run_one, path, over, out_dir) if args.jobs > 1 else _run_one(path, over, out_dir)
            per: dict[int, float] = {}
            epochs = None
            for c, job in jobs.items():
                auroc, epochs, seconds = job.result() if args.jobs > 1 else job
                per[c] = auroc
                rows.append({"model": model, "normal_class": c, "image_auroc": auroc, "seconds": seconds})
                print(f"{model} class {c}: image AUROC {auroc:.4f} ({seconds:.0f} s)", flush=True)
            mean = statistics.mean(per.values())
            results[model] = {"mean": mean, "per_class": per, "epochs": epochs,
                              "seconds": time.perf_counter() - t_model}
            rows.append({"model": model, "normal_class": "mean", "image_auroc": mean,
                         "seconds": results[model]["seconds"]})
    print_table(f"ODDObjects on digits: image AUROC ({' '.join(args.overrides)})", rows)
    device = device_name(args.device)
    figures = "; ".join(f"{m} {r['epochs']} ep mean image AUROC {r['mean']:.4f} over classes "
                        f"{','.join(map(str, r['per_class']))}" for m, r in results.items())
    if args.quick:  # a smoke test: neither RESULTS.md nor the README
        return rows
    append_results("oddobjects digits", args.device, figures)
    if not args.no_readme:
        write_readme(results, command.strip(), device)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
