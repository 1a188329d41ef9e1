"""Paper 004 (Bauer, self-supervised AE) on ``textures``: objective (1), objective (3) and a plain AE (same
network, augmentations and progressive sizes, mean squared error on undistorted images) per texture.

Reports pixel AUROC, AUPRO (FPR <= 0.3), image AUROC and the paper's area-rule TPR/TNR mean (image and pixel)
and F1; rewrites the results section of plugins/selfsup/README.md and appends a row to benchmarks/RESULTS.md.
The bar (issue #10): objective (1) or (3) beats the plain AE in pixel AUROC on every texture.

    python plugins/selfsup/benchmarks/bm_selfsup.py                             # brick, grass, gravel,
                                                                                # the configs' epochs
    python plugins/selfsup/benchmarks/bm_selfsup.py --classes brick --epochs 5  # one texture, fewer epochs
    python plugins/selfsup/benchmarks/bm_selfsup.py --quick                     # a smoke run (1 epoch, 32 pixels)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import torch
# this script lives in plugins/selfsup/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, device_name, print_table  # noqa: E402

README = os.path.join(ROOT, "plugins", "selfsup", "README.md")
CONFIGS = {"objective1": ("configs/selfsup/objective1.yaml", []),
           "objective3": ("configs/selfsup/objective3.yaml", []),
           "plain_ae": ("configs/selfsup/objective3.yaml", ["model.objective.distort=false"]),
           # the distortions of the first measurements (README): small patches and lambda 0.5 (for --models)
           "objective1_small_patches": ("configs/selfsup/objective1.yaml",
                                        ["model.objective.patch_min=0.1", "model.objective.patch_max=0.5",
                                         "model.objective.lam=0.5"])}
DEFAULT_MODELS = ["objective1", "objective3", "plain_ae"]
COLUMNS = ["texture", "model", "pixel_auroc", "aupro", "image_auroc", "image_mean", "image_f1", "pixel_mean",
           "pixel_f1", "seconds"]


def _markers(tag: str) -> tuple[str, str]:
    suffix = "" if tag == "main" else f":{tag}"
    return f"<!-- bm_selfsup{suffix}:start -->", f"<!-- bm_selfsup{suffix}:end -->"


def _rewrite_readme(rows: list[dict], command: str, device: str, epochs: str, tag: str = "main") -> None:
    from reconad.io import write_text

    START, END = _markers(tag)

    lines = [START, "", f"`{command}` on {device}, torch {torch.__version__}, commit {commit()}, {epochs}.",
             "pixel AUROC / AUPRO (FPR <= 0.3) / image AUROC are threshold-free; `image_mean` / `pixel_mean` are "
             "(TPR + TNR) / 2 and `*_f1` the F1 of the area rule (threshold fitted on held-out normal images).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |")
    verdict = _verdict(rows)
    if verdict:
        lines += ["", verdict]
    lines += ["", END]
    text = open(README, encoding="utf-8").read() if os.path.exists(README) else "# reconad-selfsup\n"
    block = "\n".join(lines)
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + ("\n\n## Results\n\n" if "## Results" not in text else "\n\n") + block + "\n"
    write_text(README, text)


def _cell(v: object) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.0f}" if v > 10 else f"{v:.4f}"
    return str(v)


def _verdict(rows: list[dict]) -> str:
    textures = sorted({r["texture"] for r in rows}, key=[r["texture"] for r in rows].index)
    parts, ok = [], True
    for t in textures:
        by = {r["model"]: r.get("pixel_auroc") for r in rows if r["texture"] == t}
        if "plain_ae" not in by or len(by) < 2:
            continue
        best = max(v for k, v in by.items() if k != "plain_ae" and v is not None)
        won = best > by["plain_ae"]
        ok &= won
        parts.append(f"{t}: best self-supervised {best:.4f} vs plain AE {by['plain_ae']:.4f} "
                     f"({'beats' if won else 'does NOT beat'})")
    if not parts:
        return ""
    return f"Bar (objective (1) or (3) beats the plain AE in pixel AUROC on every texture): " \
           f"{'MET' if ok else 'NOT MET'}. " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> list[dict]:
    from reconad.config import load_config
    from reconad.engine import run
    from reconad.io import write_json
    from reconad_selfsup.evaluate import area_rule_from_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", nargs="*", default=["brick", "grass", "gravel"], help="textures to run")
    ap.add_argument("--models", nargs="*", default=DEFAULT_MODELS, choices=list(CONFIGS))
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the configs')")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 32-pixel images")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--min-area-fraction", type=float, default=0.005)
    ap.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder); runs "
                    "already finished there (bm_row.json) are reused, so invocations can split the textures")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite plugins/selfsup/README.md")
    ap.add_argument("--record-reused", action="store_true",
                    help="also append reused rows to RESULTS.md (when the invocations that trained them did not)")
    ap.add_argument("--tag", default="main", help="README results section to rewrite (one per tag)")
    args = ap.parse_args(argv or [])
    extra = list(args.overrides)
    if args.quick:
        extra += ["train.epochs=1"]
    if args.epochs is not None:
        extra.append(f"train.epochs={args.epochs}")
    command = "python plugins/selfsup/benchmarks/bm_selfsup.py " + " ".join(argv or [])
    rows: list[dict] = []
    fresh: list[dict] = []        # trained by this invocation (reused rows were recorded when trained)
    dev_label = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or tmp
        for texture in args.classes:
            for model in args.models:
                path, own = CONFIGS[model]
                cfg = load_config(os.path.join(ROOT, path), [*own, *extra, f"data.category={texture}",
                                                             f"train.device={args.device}", "train.progress=false"])
                out = os.path.join(base, f"{texture}-{model}")
                saved = os.path.join(out, "bm_row.json")
                if args.out and os.path.isfile(saved):     # finished earlier (or by a parallel invocation)
                    with open(saved, encoding="utf-8") as fh:
                        rows.append(json.load(fh))
                    print(f"reusing {saved}", flush=True)
                    if args.record_reused:
                        fresh.append(rows[-1])
                    continue
                t0 = time.perf_counter()
                res = run(cfg, out, log=lambda s: None)
                tr = res.train
                rule = area_rule_from_model(tr.model, tr.splits, next(tr.model.parameters()).device,
                                            batch_size=cfg.test.batch_size,
                                            min_area_fraction=args.min_area_fraction)
                dev_label = str(next(tr.model.parameters()).device)
                m = res.metrics
                row = {"texture": texture, "model": model, "pixel_auroc": m.get("pixel_auroc"),
                       "aupro": m.get("aupro"), "image_auroc": m.get("image_auroc"),
                       "image_mean": rule.get("image_mean"), "image_f1": rule.get("image_f1"),
                       "pixel_mean": rule.get("pixel_mean"), "pixel_f1": rule.get("pixel_f1"),
                       "seconds": time.perf_counter() - t0, "epochs": cfg.train.epochs}
                rows.append(row)
                fresh.append(row)
                write_json(saved, row)
                print(json.dumps(row), flush=True)
                if not args.no_readme:
                    _rewrite_readme(rows, command, device_name(dev_label), f"{cfg.train.epochs} epochs", args.tag)
    if rows and not args.no_readme:
        _rewrite_readme(rows, command, device_name(dev_label), f"{cfg.train.epochs} epochs", args.tag)
    print_table(f"selfsup on textures ({command})", rows, COLUMNS)
    verdict = _verdict(rows)
    if verdict:
        print(verdict)
    figures = "; ".join(f"{r['texture']}/{r['model']}: pixel AUROC {r['pixel_auroc']:.4f}, AUPRO {r['aupro']:.4f}, "
                        f"image mean {_cell(r['image_mean'])}" for r in fresh)
    if args.quick or not fresh:   # a smoke run is not a result; reused rows are in RESULTS.md already
        return rows
    append_results("selfsup", dev_label, f"{' '.join(extra) or 'configs defaults'}: {figures}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
