"""Benchmark of ``reconad.ops.topk_mask`` (OLED's threshold unit) against its eager PyTorch forms.

Per shape (B, H, W), keep = 0.875, float32:

* ``copy``: ``a.clone()``, the floor (one read, one write);
* ``eager_topk``: ``s = a.topk(k).values[:, -1]`` then eq. 2 (what a model would write);
* ``kthvalue``: ``s = a.kthvalue(N - k + 1)`` then eq. 2 (the op's PyTorch fallback);
* ``topk_mask``: the op's forward (``reconad.ops.topk_mask``, whichever backend it runs on);
* ``topk_mask_bwd``: the op's backward alone (``grad="ste"`` and ``"exact"``).

    python benchmarks/bm_topk_mask.py                    # CPU, 2 threads, the issue's CPU shapes
    python benchmarks/bm_topk_mask.py --device cuda      # the issue's H100 shapes
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, bench_device, pick_shapes, print_table, time_fn  # noqa: E402

from reconad.ops import TOPK_MASK_EPS, backend, topk_mask  # noqa: E402

_tm = importlib.import_module("reconad.ops.topk_mask")  # the module (reconad.ops.topk_mask is the function)

CPU_SHAPES = [(256, 28, 28), (64, 64, 64), (16, 256, 256)]
CUDA_SHAPES = [(256, 28, 28), (64, 64, 64), (64, 128, 128), (32, 256, 256), (8, 512, 512)]


def _eq2(a: torch.Tensor, s: torch.Tensor, eps: float) -> torch.Tensor:
    d = torch.relu(s.view(-1, 1, 1) - a)
    return d / (d + eps)


def eager_topk(a: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    return _eq2(a, a.flatten(1).topk(k, dim=1).values[:, -1], eps)


def kthvalue(a: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    n = a.shape[-1] * a.shape[-2]
    return _eq2(a, a.flatten(1).kthvalue(n - k + 1, dim=1).values, eps)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--keep", type=float, default=0.875)
    p.add_argument("--shape", action="append", help="B,H,W (repeatable); default: the device's shapes")
    p.add_argument("--no-record", action="store_true", help="do not append a row to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    dev = bench_device(args.device, args.threads)
    shapes = pick_shapes(args.shape, dev, CPU_SHAPES, CUDA_SHAPES)
    eps = TOPK_MASK_EPS
    which = backend("topk_mask", dev.type)
    rows: list[dict] = []
    for shape in shapes:
        n = shape[1] * shape[2]
        k = _tm.hidden_count(args.keep, n)
        a = torch.rand(shape, device=dev)
        mask = topk_mask(a, args.keep)
        if not torch.equal(mask, _tm.topk_mask_reference(a, args.keep)):
            raise SystemExit(f"topk_mask ({which}) differs from its reference at shape {shape}")
        g = torch.randn(shape, device=dev)
        _, thr = (torch.ops.reconad.topk_mask(a, k, eps, "ste") if which != "fallback"
                  else _tm._forward_reference(a, k, eps))
        bwd = torch.ops.reconad.topk_mask_backward if which != "fallback" else _tm._backward_reference
        impls = {
            "copy": lambda: a.clone(),
            "eager_topk": lambda: eager_topk(a, k, eps),
            "kthvalue": lambda: kthvalue(a, k, eps),
            "topk_mask": lambda: topk_mask(a, args.keep),
            "topk_mask_bwd_ste": lambda: bwd(g, a, thr, eps, "ste"),
            "topk_mask_bwd_exact": lambda: bwd(g, a, thr, eps, "exact"),
        }
        times = {name: time_fn(fn, dev, repeat=20 if dev.type == "cuda" else 10) for name, fn in impls.items()}
        for name, t in times.items():
            rows.append({
                "shape": "x".join(map(str, shape)), "impl": name, "backend": which if "topk_mask" in name else "",
                "us": t * 1e6, "x_vs_kthvalue": times["kthvalue"] / t, "x_vs_eager_topk": times["eager_topk"] / t,
            })
    threads = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ""
    print_table(f"topk_mask, keep={args.keep}, float32, {dev.type}{threads} (backend {which})", rows)
    if not args.no_record:
        figures = "; ".join(
            f"{r['shape']} fwd {r['us']:.0f} us ({r['x_vs_kthvalue']:.1f}x kthvalue, {r['x_vs_eager_topk']:.1f}x topk)"
            for r in rows if r["impl"] == "topk_mask")
        figures += "; bwd ste " + ", ".join(f"{r['us']:.0f}" for r in rows if r["impl"] == "topk_mask_bwd_ste") + " us"
        append_results("topk_mask", dev, f"backend {which}: {figures}")
    return rows


if __name__ == "__main__":
    main()
