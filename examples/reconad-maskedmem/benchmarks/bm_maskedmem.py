"""reconad-maskedmem (examples/reconad-maskedmem) against plain MMAE and plain OLED on the same `textures` data:
image AUROC, pixel AUROC and AUPRO@0.3, written into examples/reconad-maskedmem/README.md.

    python examples/reconad-maskedmem/benchmarks/bm_maskedmem.py  # brick, 8 epochs, all three models
    python examples/reconad-maskedmem/benchmarks/bm_maskedmem.py --textures brick grass --epochs 20

The three share the data, the image size, the optimiser settings of their own papers and the `l2` scorer
(mean of the top 2% of the smoothed squared-error map) for the pixel metrics:
maskedmem = OLED's Mask Module + MMAE encoder/memories/decoder, trained adversarially (examples/.../config.yaml);
mmae = configs/mmae/mmae.yaml; oled = OLED's Mask Module + Reconstructor (configs/oled/oled.yaml's model)
with the same scorers as maskedmem.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import yaml

# this script lives in examples/reconad-maskedmem/benchmarks/ and shares the repository's benchmarks/common.py
# (timing, RESULTS.md rows, README tables): the root is three folders up from here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import append_results, commit, device_name, print_table, write_readme_section  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "reconad-maskedmem")
L2 = {"name": "l2", "reduction": "topk", "topk_fraction": 0.02, "smoothing_sigma": 2.0}


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def model_configs() -> dict[str, dict]:
    masked = _load(os.path.join(EXAMPLE, "config.yaml"))
    mmae = _load(os.path.join(ROOT, "configs", "mmae", "mmae.yaml"))
    oled = _load(os.path.join(ROOT, "configs", "oled", "oled.yaml"))
    oled["data"] = dict(masked["data"])
    oled["train"]["select_every"] = 0    # textures has no labelled validation split: keep the last model
    oled["model"]["scorers"] = [L2, {"name": "oled"}]
    oled["test"] = dict(masked.get("test", {}))
    return {"maskedmem": masked, "mmae": mmae, "oled": oled}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--textures", nargs="*", default=["brick"], choices=["brick", "grass", "gravel"])
    ap.add_argument("--models", nargs="*", default=["maskedmem", "mmae", "oled"], choices=["maskedmem", "mmae", "oled"])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="1 epoch, no README / RESULTS.md update")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from reconad.config import apply_overrides, validate
    from reconad.engine import run
    from reconad.plugins import get_registry

    registry = get_registry()
    configs = model_configs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for texture in args.textures:
            for name in args.models:
                raw = apply_overrides(configs[name], [f"data.category={texture}", f"train.epochs={args.epochs}",
                                                      f"train.device={args.device}", "train.progress=false"])
                t0 = time.perf_counter()
                res = run(validate(raw, registry), os.path.join(tmp, f"{texture}-{name}"), registry=registry,
                          log=lambda *_: None)
                m = res.metrics
                n_params = sum(p.numel() for p in res.train.model.parameters())
                rows.append({"texture": texture, "model": name, "image_auroc": m["image_auroc"],
                             "pixel_auroc": m.get("pixel_auroc"), "aupro": m.get("aupro"),
                             "params": n_params, "minutes": (time.perf_counter() - t0) / 60})
                print(f"{texture} {name}: {rows[-1]}", flush=True)
    print_table(f"maskedmem vs MMAE vs OLED, textures, {args.epochs} epochs", rows)
    if not args.quick:
        import torch

        command = "python examples/reconad-maskedmem/benchmarks/bm_maskedmem.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        lines = [f"`{command.strip()}` on {device_name(args.device)}, torch {torch.__version__}, commit {commit()}, "
                 f"{args.epochs} epochs each:", "",
                 "| texture | model | image AUROC | pixel AUROC | AUPRO@0.3 | parameters | minutes |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['texture']} | {r['model']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
                         f"{r['aupro']:.3f} | {r['params']:,} | {r['minutes']:.1f} |")
        start, end = "<!-- bm_maskedmem:start -->", "<!-- bm_maskedmem:end -->"
        write_readme_section(os.path.join(EXAMPLE, "README.md"), "\n".join([start, *lines, end]), start, end)
        append_results("maskedmem", args.device, "; ".join(
            f"{r['texture']} {r['model']}: img {r['image_auroc']:.3f} px {r['pixel_auroc']:.3f} "
            f"aupro {r['aupro']:.3f}" for r in rows) + f" ({args.epochs} epochs)")
    return rows


if __name__ == "__main__":
    main()
