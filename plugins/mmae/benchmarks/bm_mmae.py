"""MMAE (paper 002) vs a single-scale MemAE on ``textures`` (brick, grass, gravel), with the fuser ablation:
image AUROC, pixel AUROC and AUPRO@0.3 per texture, written into plugins/mmae/README.md.

    python plugins/mmae/benchmarks/bm_mmae.py                       # 3 textures x {MMAE attention, MMAE mean,
                                                                    #   MemAE, MemAE without batch norm}
    python plugins/mmae/benchmarks/bm_mmae.py --epochs 10 --jobs 2  # two training processes at a time
    python plugins/mmae/benchmarks/bm_mmae.py --quick               # 1 epoch on brick: a smoke run (no README)

Runs can be split over processes and resumed: ``--rows FILE`` appends every finished run to FILE (JSON lines)
and reuses the runs already there (same texture, model, epochs and overrides), e.g. one process per texture with
``--textures brick --rows rows.jsonl --no-write``, then ``--rows rows.jsonl`` alone writes the table.

Configs: configs/mmae/mmae.yaml (the fuser ablation sets model.decoder.fuser=mean) and
configs/mmae/memae_single_scale.yaml (with and without batch norm). Every run uses the config's optimiser
(Adam, lr 1e-4, weight decay 1e-5) unless ``--set train.lr=...`` says otherwise.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

# this script lives in plugins/mmae/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, device_name, print_table, write_readme_section  # noqa: E402

README = os.path.join(ROOT, "plugins", "mmae", "README.md")
START, END = "<!-- bm_mmae:start -->", "<!-- bm_mmae:end -->"
VARIANTS = {
    "mmae": ("configs/mmae/mmae.yaml", []),
    "mmae_mean_fuser": ("configs/mmae/mmae.yaml", ["model.decoder.fuser=mean"]),
    "memae": ("configs/mmae/memae_single_scale.yaml", []),
    # the same single-scale MemAE without batch norm: like MMAE, which (as the paper says) has none
    "memae_no_bn": ("configs/mmae/memae_single_scale.yaml", ["model.encoder.batch_norm=false",
                                                             "model.decoder.batch_norm=false"]),
}
TEXTURES = ("brick", "grass", "gravel")


def _one(job: tuple[str, str, list[str], str]) -> dict:
    """Train and test one (texture, variant); runs in a worker process."""
    import torch

    from reconad.config import load_config
    from reconad.engine import run

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    texture, variant, overrides, tmp = job
    path, extra = VARIANTS[variant]
    cfg = load_config(os.path.join(ROOT, path), [*extra, *overrides, f"data.category={texture}",
                                                 "train.progress=false"])
    t0 = time.perf_counter()
    res = run(cfg, os.path.join(tmp, f"{texture}-{variant}"), log=lambda s: None)
    model = res.train.model
    row = {"texture": texture, "model": variant, "params": sum(p.numel() for p in model.parameters()),
           "image_auroc": res.metrics["image_auroc"], "pixel_auroc": res.metrics.get("pixel_auroc"),
           "aupro": res.metrics.get("aupro"), "seconds": time.perf_counter() - t0, "epochs": cfg.train.epochs,
           "lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay, "overrides": overrides}
    if variant == "mmae":  # what the attention fuser learned: mean weight per scale over the test images
        model.eval()
        test = res.train.splits.test
        with torch.no_grad():
            images = torch.stack([test[i]["image"] for i in range(len(test))]).to(next(model.parameters()).device)
            w = torch.cat([model(images[i:i + 64])["scale_weights"] for i in range(0, len(images), 64)])
        per_scale = w.flatten(2).mean(2)                                      # (N, K)
        row["scale_weights"] = [round(float(v), 3) for v in per_scale.mean(0)]
        row["weight_spread"] = float(w.std(1).mean())                         # 0 = plain averaging
        row["resolutions"] = list(model.encoder.resolutions)
    print(f"{texture:6s} {variant:16s} image AUROC {row['image_auroc']:.4f}  pixel AUROC "
          f"{row['pixel_auroc']:.4f}  AUPRO {row['aupro']:.4f}  ({row['seconds']:.0f} s)", flush=True)
    return row


def _wins(rows: list[dict], textures: list[str], baseline: str) -> int:
    """On how many textures MMAE's AUPRO beats ``baseline``'s (textures where either run is missing count as no)."""
    by = {(r["texture"], r["model"]): r for r in rows}
    return sum(1 for t in textures if (t, "mmae") in by and (t, baseline) in by
               and by[(t, "mmae")]["aupro"] > by[(t, baseline)]["aupro"])


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _markdown(rows: list[dict], args: argparse.Namespace, wins: int, textures: list[str], command: str) -> str:
    import torch

    lines = [START, "", "## Results (written by `plugins/mmae/benchmarks/bm_mmae.py`)", "",
             f"Command: `{command}`  ",
             f"Device: {device_name('cpu')}, torch {torch.__version__}, commit {commit()}, "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
             f"Training: {rows[0]['epochs']} epochs per run (the paper trains 2000), batch 32, Adam lr "
             f"{rows[0].get('lr', 1e-4):g}, weight decay {rows[0].get('weight_decay', 1e-5):g}; 64x64 grey "
             "`textures` patches (435 train, 87 held-out, 145 test of which 72 carry a synthetic defect with a "
             "pixel mask).", "",
             "| texture | model | params | image AUROC | pixel AUROC | AUPRO@0.3 | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['texture']} | {r['model']} | {r['params']:,} | {_fmt(r['image_auroc'])} | "
                     f"{_fmt(r['pixel_auroc'])} | {_fmt(r['aupro'])} | {r['seconds']:.0f} |")
    lines += ["", f"**Bar (MMAE beats single-scale MemAE in AUPRO on at least two of the three textures): "
                  f"MMAE wins on {wins} of {len(textures)}** "
                  f"({'met' if wins >= 2 and len(textures) == 3 else 'not met' if len(textures) == 3 else 'partial run'}).",
              ""]
    if any(r["model"] == "memae_no_bn" for r in rows):
        lines += [f"Against the same single-scale MemAE without batch norm (`memae_no_bn`, normalisation-free like "
                  f"MMAE): MMAE wins in AUPRO on {_wins(rows, textures, 'memae_no_bn')} of {len(textures)}.", ""]
    att = {r["texture"]: r for r in rows if r["model"] == "mmae"}
    if att:
        lines += ["Fuser ablation (attention vs plain averaging, same config otherwise) and what the attention "
                  "fuser learned (mean weight per scale over the test images, scales from finest to coarsest; "
                  "'spread' is the mean std of the K weights at a position, 0 for plain averaging):", "",
                  "| texture | AUPRO attention | AUPRO mean | image AUROC attention | image AUROC mean | "
                  "weights per scale | spread |", "|---|---|---|---|---|---|---|"]
        for t, r in att.items():
            m = next((x for x in rows if x["texture"] == t and x["model"] == "mmae_mean_fuser"), None)
            res = "/".join(str(v) for v in r.get("resolutions", []))
            weights = f"{r['scale_weights']} ({res} px)" if "scale_weights" in r else "-"
            spread = f"{r['weight_spread']:.3f}" if "weight_spread" in r else "-"
            lines.append(f"| {t} | {_fmt(r['aupro'])} | {_fmt(m['aupro']) if m else '-'} | "
                         f"{_fmt(r['image_auroc'])} | {_fmt(m['image_auroc']) if m else '-'} | {weights} | {spread} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_readme(section: str, path: str = README) -> None:
    write_readme_section(path, section, START, END, heading="")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", "--textures", dest="textures", nargs="*", default=list(TEXTURES),
                    choices=TEXTURES)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    ap.add_argument("--quick", action="store_true", help="1 epoch on brick, no README / RESULTS.md update")
    ap.add_argument("--rows", default=None, help="JSON-lines file: append finished runs, reuse those already there")
    ap.add_argument("--no-write", action="store_true",
                    help="neither rewrite the README's results section nor append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv or [])
    if args.quick:
        args.epochs, args.textures = 1, ["brick"]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    overrides = [f"train.epochs={args.epochs}", f"train.device={args.device}", *args.overrides]
    done: dict[tuple[str, str], dict] = {}
    if args.rows and os.path.exists(args.rows):
        with open(args.rows, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line) if line.strip() else None
                if r and r.get("epochs") == args.epochs and r.get("overrides", overrides) == overrides:
                    done[(r["texture"], r["model"])] = r
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(t, v, overrides, tmp) for t in args.textures for v in args.variants if (t, v) not in done]

        def keep(row: dict) -> None:
            done[(row["texture"], row["model"])] = row
            if args.rows:
                with open(args.rows, "a", encoding="utf-8") as fh:   # one short line per run: an atomic append
                    fh.write(json.dumps(row) + "\n")

        if args.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
                for row in pool.map(_one, jobs):
                    keep(row)
        else:
            for job in jobs:
                keep(_one(job))
    rows = [done[(t, v)] for t in args.textures for v in args.variants]
    means = []
    for v in args.variants:
        mine = [r for r in rows if r["model"] == v]
        means.append({"texture": "mean", "model": v, "params": mine[0]["params"],
                      **{k: statistics.mean(r[k] for r in mine) for k in ("image_auroc", "pixel_auroc", "aupro")},
                      "seconds": sum(r["seconds"] for r in mine), "epochs": args.epochs})
    table = rows + means
    print_table(f"MMAE vs single-scale MemAE on textures ({args.epochs} epochs)", table,
                ["texture", "model", "params", "image_auroc", "pixel_auroc", "aupro", "seconds"])
    wins = _wins(rows, args.textures, "memae")
    print(f"MMAE beats MemAE in AUPRO on {wins} of {len(args.textures)} textures")
    if not args.quick and not args.no_write:
        command = "python plugins/mmae/benchmarks/bm_mmae.py " + " ".join(argv or [])
        write_readme(_markdown(table, args, wins, args.textures, command.strip()))
        append_results("mmae", args.device, f"textures {args.epochs} epochs, AUPRO@0.3 " + ", ".join(
            f"{r['texture']}/{r['model']}={r['aupro']:.3f}" for r in table) + f"; MMAE > MemAE on {wins}")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
