"""Benchmark of exact AUPRO (issue 5): reconad's kernels against an fp64 implementation of the official
MVTec AD algorithm, on the same synthetic blob-shaped ground truth for every tool.

Implementations (rows):

* ``official-fp64``   the official algorithm in numpy (tests/metrics/_oracle.py): per-image scipy labels,
                      argsort of every pixel; the reference every other row's ``|diff|`` is measured against;
* ``reconad-fallback`` reconad's numpy / scipy fallback (``pro_curve_reference``);
* ``reconad``         ``reconad.metrics.aupro`` on the best backend for the device (``cpp`` / ``cuda``);
* ``reconad-binned``  the streaming ``AUPRO(mode="binned", bins=65536)``, one update with all maps;
* ``anomalib`` / ``adeval`` when those packages are installed (ADEval calls numpy's removed ``trapz``:
  aliased here, never in reconad).

    python benchmarks/bm_pro_curve.py                          # CPU: 200 maps of 256x256 (13.1 Mpix)
    python benchmarks/bm_pro_curve.py --maps 1725              # MVTec AD's test-set size
    python benchmarks/bm_pro_curve.py --device cuda            # 100 maps of 1024x1024 from CUDA tensors
    python benchmarks/bm_pro_curve.py --skip-official          # without the slow reference rows
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "metrics"))
from common import append_results, print_table, time_fn  # noqa: E402

import reconad.metrics as M  # noqa: E402
from reconad.ops import backend  # noqa: E402
from reconad.ops.pro_curve import pro_curve_reference  # noqa: E402

__all__ = ["main", "make_data"]


def make_data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blob-shaped masks (thresholded smoothed noise, the tests' generator) and noisy float32 maps that
    score anomalous pixels higher on average."""
    from _oracle import blob_masks

    rng = np.random.default_rng(seed)
    masks = np.concatenate([blob_masks(rng, 1, size, size) for _ in range(n)])   # one at a time: less memory
    maps = rng.random((n, size, size), dtype=np.float32) * 0.8
    maps += 0.35 * masks
    return maps, masks


def _optional_tools() -> dict:
    tools = {}
    try:
        from anomalib.metrics import AUPRO as AnomalibAUPRO  # type: ignore

        def anomalib_aupro(maps, masks, limit):
            metric = AnomalibAUPRO(fpr_limit=limit)
            metric.update(torch.as_tensor(maps), torch.as_tensor(masks).int())
            return float(metric.compute())

        tools["anomalib"] = anomalib_aupro
    except Exception:  # noqa: BLE001 - optional comparison
        pass
    try:
        if not hasattr(np, "trapz"):
            np.trapz = np.trapezoid  # ADEval still calls the removed name
        from adeval import EvalAccumulator  # type: ignore

        def adeval_aupro(maps, masks, limit):
            acc = EvalAccumulator(float(maps.min()), float(maps.max()), float(maps.min()), float(maps.max()))
            acc.add_anomap_batch(torch.as_tensor(maps), torch.as_tensor(masks).to(torch.uint8))
            return float(acc.summary()["p_aupro"])

        tools["adeval"] = adeval_aupro
    except Exception:  # noqa: BLE001 - optional comparison
        pass
    return tools


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--maps", type=int, default=None, help="number of maps (default 200 CPU / 100 CUDA)")
    p.add_argument("--size", type=int, default=None, help="map side (default 256 CPU / 1024 CUDA)")
    p.add_argument("--limit", type=float, default=0.3)
    p.add_argument("--skip-official", action="store_true", help="skip the slow fp64 official reference")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    n = args.maps or (100 if device.type == "cuda" else 200)
    size = args.size or (1024 if device.type == "cuda" else 256)
    maps, masks = make_data(n, size)
    mpix = n * size * size / 1e6
    maps_t = torch.from_numpy(maps).to(device)
    masks_t = torch.from_numpy(masks).to(device)

    rows: list[dict] = []
    reference = None

    def run(name: str, fn, slow: bool = False) -> None:
        nonlocal reference
        value = fn()
        t = time_fn(fn, device, warmup=0 if slow else 2, repeat=1 if slow else 10, min_time=0.0 if slow else 0.5)
        if name == "official-fp64":
            reference = value
        rows.append({"impl": name, "maps": f"{n}x{size}x{size}", "Mpix": round(mpix, 1), "ms": t * 1e3,
                     "aupro": value, "|diff|": abs(value - reference) if reference is not None else float("nan")})

    if not args.skip_official:
        from _oracle import official_aupro

        run("official-fp64", lambda: official_aupro(maps, masks, args.limit), slow=True)
        run("reconad-fallback", lambda: pro_curve_reference(maps, masks, args.limit, False).area / args.limit,
            slow=True)
    run(f"reconad ({backend('pro_curve', device.type)})", lambda: M.aupro(maps_t, masks_t, args.limit))

    def binned() -> float:
        metric = M.AUPRO(args.limit, mode="binned", bins=65536, score_range=(0.0, 1.15))
        metric.update(maps_t, masks_t)
        return metric.compute()

    run("reconad-binned", binned, slow=True)
    for name, fn in _optional_tools().items():
        run(name, lambda fn=fn: fn(maps, masks, args.limit), slow=True)

    print_table(f"exact AUPRO@{args.limit} ({device.type}, {torch.get_num_threads()} threads)", rows)
    if not args.no_record:
        figures = "; ".join(f"{r['impl']} {r['maps']} {r['ms']:.1f} ms" for r in rows)
        if device.type == "cpu" and hasattr(os, "getloadavg"):   # the dev machine is shared: say how busy
            figures += f" (load average {os.getloadavg()[0]:.1f})"
        append_results("bm_pro_curve", device, figures)
    return rows


if __name__ == "__main__":
    main()
