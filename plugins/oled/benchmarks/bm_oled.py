"""OLED (paper 001) on one-class ``digits``: OLED and the random-mask context autoencoder (§4.6), every class.

Reports the image AUROC of each score (s_avg, s_mask, s_cont, s_rec) per class and their means, and the Mask
Module's segmentation pixel AUROC (§4.5, activation map vs the digits' non-zero pixels, inliers / outliers)
and the epoch the configs' validation selection kept (§4.1), for one seed or as the mean over several (each
seed draws its own split of the data); appends a row to benchmarks/RESULTS.md and rewrites the results section
of plugins/oled/README.md (``--trace``: the trace section of plugins/oled/NOTES.md instead).

    python plugins/oled/benchmarks/bm_oled.py           # configs/oled/{oled,cae_random_mask}.yaml, ten classes
    python plugins/oled/benchmarks/bm_oled.py --classes 2 8 --epochs 10 --jobs 2 --anomalies-per-class 100
    python plugins/oled/benchmarks/bm_oled.py --models oled --classes 8 --epochs 100 --trace 5
                                                        # test AUROC every 5 epochs
    python plugins/oled/benchmarks/bm_oled.py --seeds 0 1 2 --jobs 2   # three seeds (each its own data split):
                                                                       # per-class means
    python plugins/oled/benchmarks/bm_oled.py --quick   # two classes, 2 epochs: a smoke run (not recorded)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

# this script lives in plugins/oled/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, print_table, write_readme_section  # noqa: E402

CONFIGS = {"oled": os.path.join(ROOT, "configs", "oled", "oled.yaml"),
           "cae": os.path.join(ROOT, "configs", "oled", "cae_random_mask.yaml")}
SCORES = {"s_avg": "oled", "s_mask": "oled_mask", "s_cont": "oled_cont", "s_rec": "oled_rec"}
README = os.path.join(ROOT, "plugins", "oled", "README.md")
NOTES = os.path.join(ROOT, "plugins", "oled", "NOTES.md")  # the --trace diagnostic, an experiment log
START, END = "<!-- bm_oled results: start -->", "<!-- bm_oled results: end -->"
TRACE_START, TRACE_END = "<!-- bm_oled trace: start -->", "<!-- bm_oled trace: end -->"
BAR = 0.97


def _job(model: str, c: int, overrides: list[str], tmp: str, trace_every: int = 0) -> dict:
    """Train and test one (model, normal class); runs in a worker process with one thread. ``trace_every``:
    also score the test set every that many epochs (training stops and resumes exactly; diagnostic only: the
    reported scores are still those of the model the run keeps, which is the trace's last point, and each point
    carries the validation AUROC the run's selection measured at that epoch, if it selects)."""
    import torch

    torch.set_num_threads(1)
    from reconad.config import load_config
    from reconad.engine import run
    from reconad.metrics import auroc

    cfg = load_config(CONFIGS[model], [*overrides, f"data.normal_class={c}", "train.device=cpu",
                                       "train.progress=false"])
    t0 = time.perf_counter()
    out, trace = os.path.join(tmp, f"{model}{c}"), []
    if trace_every:
        from reconad.engine.evaluate import score_dataset
        res = run(cfg, out, stop_after_steps=0, log=lambda s: None)   # builds everything, trains nothing
        n = len(res.train.splits.train)
        steps_per_epoch = n // min(cfg.train.batch_size, n)
        while res.metrics is None:
            res = run(cfg, out, resume=True, stop_after_steps=trace_every * steps_per_epoch, log=lambda s: None)
            if res.metrics is None:   # not the last chunk: score the test set now
                s = score_dataset(res.train.model, res.train.splits.test, torch.device("cpu"), keep_maps=False,
                                  keep_masks=False)
                point = {k: auroc(s.image[v], s.labels) for k, v in SCORES.items()}
                trace.append({"epoch": res.train.step // steps_per_epoch, **point})
            else:                     # the run is over: its metrics are those of the model it keeps
                sel = res.metrics.get("selection")
                trace.append({"epoch": sel["best"]["epoch"] if sel else res.train.step // steps_per_epoch,
                              "kept": bool(sel),
                              **{k: res.metrics["scorers"][v]["image_auroc"] for k, v in SCORES.items()}})
        history = {p["epoch"]: p["validation_auroc"] for p in (res.metrics.get("selection") or {}).get("history", [])}
        for t in trace:
            t["validation"] = history.get(t["epoch"])
    else:
        res = run(cfg, out, log=lambda s: None)
    row = {"model": model, "normal_class": c,
           **{k: res.metrics["scorers"][v]["image_auroc"] for k, v in SCORES.items()},
           "epoch_kept": (res.metrics.get("selection") or {}).get("best", {}).get("epoch")}
    if trace:
        row["trace"] = trace
    if model == "oled":   # s_avg's AUROC of the normal test images against each anomalous digit alone
        import csv

        with open(os.path.join(out, "scores.csv"), newline="") as fh:
            scored = [(r["defect"], float(r["score"])) for r in csv.DictReader(fh)]
        normal = [v for d, v in scored if d == "good"]
        for d in sorted({d for d, _ in scored} - {"good"}):
            anomalous = [v for e, v in scored if e == d]
            row[f"vs_{d}"] = auroc(normal + anomalous, [0] * len(normal) + [1] * len(anomalous))
        from reconad_oled.evaluate import segmentation_auroc

        seg = segmentation_auroc(res.train.model, res.train.splits.test)
        row.update({"seg_inlier": seg["inlier"], "seg_outlier": seg["outlier"]})
    row["seconds"] = time.perf_counter() - t0
    return row


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.mean(vals) if vals else None


def _over_seeds(runs: list[dict]) -> dict:
    """One (model, class)'s row from its runs with different seeds: the mean of every figure and the epochs kept
    joined ("1/12/30")."""
    row = {k: _mean(runs, k) if isinstance(v, float) else v for k, v in runs[0].items()}
    if len(runs) > 1:
        row["epoch_kept"] = "/".join(str(r.get("epoch_kept")) for r in runs)
    return row


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _readme_section(command: str, rows: dict[str, list[dict]], summary: dict, epochs_note: str) -> str:
    import torch

    lines = [START, "", f"`{command}`  ", f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{platform.processor() or platform.machine()} (CPU, 1 thread per job), torch {torch.__version__}, "
             f"commit {commit()}; {epochs_note}", ""]
    lines += ["| model | class | s_avg | s_mask | s_cont | s_rec | epoch kept | MM seg. AUROC inlier / outlier |",
              "|---|---|---|---|---|---|---|---|"]
    for model, rs in rows.items():
        for r in rs + [summary[model]]:
            seg = (f"{_fmt(r.get('seg_inlier'))} / {_fmt(r.get('seg_outlier'))}" if model == "oled" else "")
            kept = r.get("epoch_kept")
            lines.append(f"| {model} | {r['normal_class']} | " + " | ".join(_fmt(r.get(k)) for k in SCORES)
                         + f" | {'' if kept is None else kept} | {seg} |")
    seeds = summary["seeds"]
    if len(seeds) > 1:
        lines += ["", f"Each row is the mean over seeds {' '.join(map(str, seeds))} (each seed draws its own split "
                  "of the data and its own initialisation); the epochs kept are listed per seed. The mean over the "
                  "classes for each seed:", "",
                  "| model | seed | " + " | ".join(SCORES) + " |", "|---" * (len(SCORES) + 2) + "|"]
        for model in rows:
            for sd in seeds:
                per_seed = summary[model]["per_seed"][sd]
                lines.append(f"| {model} | {sd} | " + " | ".join(_fmt(per_seed[k]) for k in SCORES) + " |")
    verdict = summary.get("verdict")
    if verdict:
        lines += ["", verdict]
    if any(k.startswith("vs_digit_") for r in rows.get("oled", []) for k in r):
        lines += ["", "OLED's s_avg AUROC of each class's normal test images against one anomalous digit at a time:", "",
                  "| normal class | " + " | ".join(f"vs {d}" for d in range(10)) + " |", "|---" * 11 + "|"]
        for r in rows["oled"]:
            lines.append(f"| {r['normal_class']} | " + " | ".join(_fmt(r.get(f"vs_digit_{d}", "")) for d in range(10))
                         + " |")
    lines += ["", END]
    return "\n".join(lines)


def _trace_section(command: str, rows: dict[str, list[dict]], epochs_note: str) -> str:
    """The test AUROC of each score after every traced epoch, one table per (model, class)."""
    lines = [TRACE_START, "", f"`{command}`  ", f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"commit {commit()}; {epochs_note}. Test AUROC after each traced epoch (a diagnostic of how the epoch "
             "matters; nothing is selected on test data), the validation split's s_avg AUROC the run's selection "
             "measured at that epoch, and last the model the run kept.",
             ""]
    for model, rs in rows.items():
        for r in rs:
            lines += [f"{model}, normal class {r['normal_class']}:", "",
                      "| epoch | " + " | ".join(SCORES) + " | validation s_avg |", "|---" * (len(SCORES) + 2) + "|"]
            lines += [f"| {'kept: ' if t.get('kept') else ''}{t['epoch']} | " + " | ".join(_fmt(t[k]) for k in SCORES)
                      + f" | {_fmt(t.get('validation') or '')} |" for t in r.get("trace", [])]
            lines.append("")
    lines.append(TRACE_END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    from reconad.io import write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--models", nargs="*", default=["oled", "cae"], choices=sorted(CONFIGS))
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the configs')")
    ap.add_argument("--anomalies-per-class", type=int, default=None,
                    help="test anomalies per other class (default: all 500)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="run every (model, class) with each seed (its own data split and initialisation) and report "
                         "the mean over seeds")
    ap.add_argument("--jobs", type=int, default=1, help="(model, class) runs in parallel, one thread each")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--scale", choices=["set", "reference"], default="set",
                    help="the oled scorer's scale: 'set' (default) min-max over the test set as the paper evaluates "
                         "(the README table); 'reference' over the held-out normals (the configs' default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: classes 0 and 1, 2 epochs, 20 anomalies per class, nothing recorded")
    ap.add_argument("--no-readme", action="store_true",
                    help="do not rewrite plugins/oled/README.md (nor NOTES.md's trace)")
    ap.add_argument("--trace", type=int, default=0, metavar="EPOCHS",
                    help="also score the test set every EPOCHS epochs and write that trace into NOTES.md's trace "
                         "section (not the results table): how the AUROC moves with training, a diagnostic")
    ap.add_argument("--cache", default=None, help="JSON file of finished (model, class) rows: rows with the same "
                    "settings are read from it instead of retrained, new rows are added as they finish")
    args = ap.parse_args(argv or [])
    if args.trace and len(args.seeds) > 1:
        ap.error("--trace traces one run per (model, class): give one seed")
    if args.quick:
        args.classes = [0, 1] if args.classes == list(range(10)) else args.classes
        args.epochs, args.anomalies_per_class = args.epochs or 2, args.anomalies_per_class or 20
    overrides = [f"model.scorers.0.scale={args.scale}", *args.overrides]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.anomalies_per_class is not None:
        overrides.append(f"data.anomalies_per_class={args.anomalies_per_class}")

    jobs = [(m, c, sd) for m in args.models for sd in args.seeds for c in args.classes]
    key = lambda m, c, sd: (f"{m}|{c}|seed {sd}|{' '.join(overrides)}"  # noqa: E731
                            + (f"|trace {args.trace}" if args.trace else ""))
    cache = json.load(open(args.cache)) if args.cache and os.path.exists(args.cache) else {}
    results: dict[tuple[str, int, int], dict] = {j: cache[key(*j)] for j in jobs if key(*j) in cache}
    with tempfile.TemporaryDirectory() as tmp:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(_job, m, c, [*overrides, f"seed={sd}"], os.path.join(tmp, f"seed{sd}"),
                                   args.trace): (m, c, sd)
                       for m, c, sd in jobs if (m, c, sd) not in results}
            for fut in as_completed(futures):
                r = {**fut.result(), "seed": futures[fut][2]}
                results[futures[fut]] = r
                if args.cache:
                    cache[key(*futures[fut])] = r
                    write_json(args.cache, cache)
                print(f"{r['model']} class {r['normal_class']} seed {r['seed']}: " + " ".join(
                    f"{k} {_fmt(r[k])}" for k in SCORES) + (f" seg {_fmt(r.get('seg_inlier'))}/"
                                                             f"{_fmt(r.get('seg_outlier'))}" if 'seg_inlier' in r
                                                             else "") + f" ({r['seconds']:.0f} s)", flush=True)
    rows = {m: [_over_seeds([results[(m, c, sd)] for sd in args.seeds]) for c in args.classes] for m in args.models}
    summary: dict = {"seeds": args.seeds}
    for m, rs in rows.items():
        summary[m] = {"model": m, "normal_class": "mean",
                      **{k: _mean(rs, k) for k in [*SCORES, "seg_inlier", "seg_outlier", "seconds"]},
                      "per_seed": {sd: {k: _mean([results[(m, c, sd)] for c in args.classes], k) for k in SCORES}
                                   for sd in args.seeds}}
    all_rows = [r for m in args.models for r in rows[m] + [summary[m]]]
    print_table(f"OLED on digits: image AUROC per score {' '.join(overrides)}", all_rows,
                ["model", "normal_class", *SCORES, "epoch_kept", "seg_inlier", "seg_outlier", "seconds"])

    best = {m: max((summary[m][k], k) for k in SCORES) for m in args.models}
    if "oled" in summary:
        oled_best = max((summary["oled"]["s_avg"], "s_avg"), (summary["oled"]["s_mask"], "s_mask"))
        parts = [f"OLED mean AUROC: {oled_best[1]} {oled_best[0]:.4f} (bar {BAR}: "
                 f"{'met' if oled_best[0] >= BAR else 'NOT met'})"]
        if "cae" in summary:
            parts.append(f"random-mask CAE best score: {best['cae'][1]} {best['cae'][0]:.4f} "
                         f"({'below' if best['cae'][0] < oled_best[0] else 'NOT below'} OLED's)")
        if len(args.seeds) > 1:
            parts.append(f"means over seeds {' '.join(map(str, args.seeds))}; OLED's {oled_best[1]} per seed: "
                         + " ".join(_fmt(summary['oled']['per_seed'][sd][oled_best[1]]) for sd in args.seeds))
        if len(args.classes) < 10:
            parts.append(f"classes {args.classes} only")
        summary["verdict"] = "; ".join(parts) + "."
        print(summary["verdict"])
    from reconad.config import load_config

    epochs = load_config(CONFIGS[args.models[0]], overrides).train.epochs
    epochs_note = (f"{epochs} epochs, test anomalies per class: "
                   f"{args.anomalies_per_class or 'all 500'}, classes {args.classes}, seeds {args.seeds}")
    command = "python plugins/oled/benchmarks/bm_oled.py " + " ".join(argv or [])
    figures = "; ".join(f"{m} mean " + " ".join(f"{k} {_fmt(summary[m][k])}" for k in SCORES)
                        for m in args.models)
    if "oled" in summary:
        figures += f"; MM seg. AUROC {_fmt(summary['oled']['seg_inlier'])}/{_fmt(summary['oled']['seg_outlier'])}"
    if args.trace:
        trace = _trace_section(command.strip(), rows, epochs_note)
        print(trace)
        if not (args.no_readme or args.quick):
            write_readme_section(NOTES, trace, TRACE_START, TRACE_END, heading="## Trace")
        return all_rows
    if args.quick:  # a smoke run: nothing recorded
        return all_rows
    append_results("oled", "cpu", f"{command.strip()}: {figures} ({epochs_note})")
    if not args.no_readme:
        write_readme_section(README, _readme_section(command.strip(), rows, summary, epochs_note), START, END)
    return all_rows


if __name__ == "__main__":
    main(sys.argv[1:])
