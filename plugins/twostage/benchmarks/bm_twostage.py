"""Paper 003 (two-stage autoencoder) on one-class ``digits``: per normal class, the two-stage model
(configs/twostage/twostage.yaml: RotNet pre-training, frozen encoder, MSE + SSIM decoders) and the end-to-end
CAE baseline (configs/twostage/cae.yaml: the same encoder architecture and decoder, trained together with
MSE). Reports image AUROC of AS (eq. 10), of each decoder alone (parts mse / ssim), and of the CAE, per class
and their means; appends a row to benchmarks/RESULTS.md and rewrites the results section of
plugins/twostage/README.md.

    OMP_NUM_THREADS=1 python plugins/twostage/benchmarks/bm_twostage.py          # all ten classes
    OMP_NUM_THREADS=1 python plugins/twostage/benchmarks/bm_twostage.py --classes 0 --jobs 1
    OMP_NUM_THREADS=1 python plugins/twostage/benchmarks/bm_twostage.py --quick  # classes 0 1, 4 + 4 epochs
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

import torch

# this script lives in plugins/twostage/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, device_name, print_table, write_readme_section  # noqa: E402

CONFIGS = {"twostage": os.path.join(ROOT, "configs", "twostage", "twostage.yaml"),
           "cae": os.path.join(ROOT, "configs", "twostage", "cae.yaml")}
README = os.path.join(ROOT, "plugins", "twostage", "README.md")
START, END = "<!-- bm_twostage results: start -->", "<!-- bm_twostage results: end -->"
BAR = 0.97


def _one(kind: str, c: int, overrides: list[str], out: str) -> dict:
    """Train and test one config for normal class ``c`` (in a worker process: one thread)."""
    torch.set_num_threads(1)
    from reconad.config import load_config
    from reconad.engine import run

    cfg = load_config(CONFIGS[kind], [*overrides, f"data.normal_class={c}", "train.progress=false"])
    t0 = time.perf_counter()
    res = run(cfg, out, log=lambda s: None)
    per = {k: v["image_auroc"] for k, v in res.metrics["scorers"].items()}
    return {"kind": kind, "class": c, "aurocs": per, "seconds": time.perf_counter() - t0}


def _readme_section(rows: list[dict], command: str, means: dict[str, float], device: str) -> str:
    lines = [START, "", f"`{command}` on {device}, torch {torch.__version__}, commit {commit()}, "
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC.", "",
             "| normal class | AS (eq. 10) | MSE decoder alone | SSIM decoder alone | end-to-end CAE |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['normal_class']} | {r['as']:.4f} | {r['mse']:.4f} | {r['ssim']:.4f} | {r['cae']:.4f} |")
    ok = means["as"] >= BAR and means["as"] > means["cae"]
    lines += ["", f"Bar (issue #9): AS mean AUROC >= {BAR} and above the end-to-end CAE: "
              f"{'met' if ok else 'NOT met'} ({means['as']:.4f} vs CAE {means['cae']:.4f}).", "", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs of both configs (both stages)")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="the two-stage model's stage-1 epochs")
    ap.add_argument("--quick", action="store_true", help="classes 0 1, 8 epochs (4 of pre-training)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes, one thread each)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for both configs")
    ap.add_argument("--anomalies-per-class", type=int, default=None,
                    help="test anomalies per other class (data.anomalies_per_class; default all 500)")
    ap.add_argument("--cache", default=None, help="JSON file keeping finished runs: rerunning skips them, so an "
                    "interrupted benchmark continues (or reports only the classes it finished, with --classes)")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite plugins/twostage/README.md")
    args = ap.parse_args(argv or [])
    from reconad.io import write_json

    if args.quick:
        args.classes = args.classes if argv and "--classes" in argv else [0, 1]
        args.epochs = args.epochs or 8
        args.pretrain_epochs = args.pretrain_epochs or 4
    common = list(args.overrides) + (["train.device=cpu"] if not any(o.startswith("train.device") for o in
                                                                        args.overrides) else [])
    if args.epochs:
        common.append(f"train.epochs={args.epochs}")
    if args.anomalies_per_class:
        common.append(f"data.anomalies_per_class={args.anomalies_per_class}")
    extra = {"twostage": [f"model.objective.pretrain_epochs={args.pretrain_epochs}"] if args.pretrain_epochs else [],
             "cae": []}
    results: dict[tuple[str, int], dict] = {}
    key = lambda k, c: f"{k}/{c}/{' '.join(common + extra[k])}"  # noqa: E731 - a cached run must match exactly
    cache = json.load(open(args.cache, encoding="utf-8")) if args.cache and os.path.exists(args.cache) else {}
    for k, c in [(k, c) for c in args.classes for k in ("twostage", "cae")]:
        if key(k, c) in cache:
            results[(k, c)] = cache[key(k, c)]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = [(k, c) for c in args.classes for k in ("twostage", "cae") if (k, c) not in results]
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
            futs = {pool.submit(_one, k, c, common + extra[k], os.path.join(tmp, f"{k}{c}")): (k, c)
                    for k, c in tasks}
            for f in cf.as_completed(futs):
                r = f.result()
                results[futs[f]] = r
                if args.cache:
                    cache[key(*futs[f])] = r
                    write_json(args.cache, cache)
                print(f"class {r['class']} {r['kind']}: " + ", ".join(f"{n} {v:.4f}" for n, v in r["aurocs"].items())
                      + f" ({r['seconds']:.0f} s)", flush=True)
    rows = []
    for c in args.classes:
        ts, cae = results[("twostage", c)], results[("cae", c)]
        rows.append({"normal_class": c, "as": ts["aurocs"]["twostage"], "mse": ts["aurocs"]["twostage_mse"],
                     "ssim": ts["aurocs"]["twostage_ssim"], "cae": cae["aurocs"]["l2"],
                     "seconds": ts["seconds"] + cae["seconds"]})
    means = {k: statistics.mean(r[k] for r in rows) for k in ("as", "mse", "ssim", "cae")}
    table = rows + [{"normal_class": "mean", **means, "seconds": sum(r["seconds"] for r in rows)}]
    title = (f"digits one-class image AUROC, two-stage AE (paper 003) vs end-to-end CAE "
             f"{' '.join(common + extra['twostage'])}")
    print_table(title, table)
    print(f"bar: AS mean >= {BAR} and > CAE: {'met' if means['as'] >= BAR and means['as'] > means['cae'] else 'NOT met'}")
    per = " ".join(f"{r['normal_class']}:{r['as']:.3f}" for r in rows)
    settings = " ".join(a for a in (argv or []))
    append_results("twostage", "cpu", f"digits classes {args.classes} {settings}: mean AUROC AS {means['as']:.4f}, "
                   f"MSE decoder {means['mse']:.4f}, SSIM decoder {means['ssim']:.4f}, end-to-end CAE "
                   f"{means['cae']:.4f} (AS per class {per})")
    if not args.no_readme:
        command = "OMP_NUM_THREADS=1 python plugins/twostage/benchmarks/bm_twostage.py " + " ".join(argv or [])
        write_readme_section(README, _readme_section(rows, command.strip(), means, device_name("cpu")), START, END)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
