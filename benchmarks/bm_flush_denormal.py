"""Subnormal floats on the CPU: a training step's forward and backward pass of a small convolutional autoencoder
whose weights are ordinary, or half of whose weights sit in float32's subnormal range (below 1.2e-38, as the
weights of a branch nothing trains any more end up: an MMAE run on Fashion-MNIST had 14k such weights and slowed
from 470 to 55 images/s), with torch's default floating-point mode and under ``reconad.engine.runtime.
flush_denormals`` (what reconad trains and scores under on the CPU). The mode is per thread: with ``--threads``
above 1 the subnormal step stays slow unless reconad._C sets it on every thread (``reconad.ops.flush_denormal``).

    python benchmarks/run.py flush_denormal
    python benchmarks/bm_flush_denormal.py --threads 1 --batch 64
"""
from __future__ import annotations

import argparse
import contextlib

import torch
from torch import nn

from common import append_results, bench_device, print_table, time_fn


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())


def main(argv: list[str] | None = None) -> list[dict]:
    from reconad.engine.runtime import flush_denormals

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--batch", type=int, default=64, help="images a step (default 64)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32, fashion_mnist's)")
    args = ap.parse_args(argv or [])
    device = bench_device("cpu", args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size)
    rows = []
    base = None
    for weights in ("ordinary", "half subnormal"):
        for mode in ("torch default", "flush_denormals"):
            net = _net()
            if weights != "ordinary":
                with torch.no_grad():
                    for p in net.parameters():   # scaled in float64: 1e-38 is itself subnormal in float32
                        p.copy_(torch.where(torch.rand_like(p) < 0.5, (p.double() * 1e-38).float(), p))

            def step() -> None:
                net.zero_grad(set_to_none=True)
                nn.functional.mse_loss(net(x), x).backward()

            scope = flush_denormals(device) if mode == "flush_denormals" else contextlib.nullcontext()
            with scope:
                sec = time_fn(step, device, warmup=2, repeat=10)
            base = sec if base is None else base
            rows.append({"weights": weights, "mode": mode, "ms/step": 1e3 * sec, "images/s": args.batch / sec,
                         "vs ordinary": sec / base})
    print_table(f"forward + backward, conv autoencoder {args.size}x{args.size}, batch {args.batch}, "
                f"{args.threads} thread(s)", rows)
    append_results("bm_flush_denormal", device, "; ".join(
        f"{r['weights']} weights, {r['mode']}: {r['ms/step']:.1f} ms/step ({r['vs ordinary']:.2f}x ordinary)"
        for r in rows) + f" (batch {args.batch}, {args.size} px)")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
