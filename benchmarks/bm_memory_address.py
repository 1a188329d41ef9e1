"""Benchmark of ``reconad.ops.memory_address`` (issue 3): forward and forward+backward times and extra peak
memory of

* ``op``        the public function (the compiled op where ``backend`` says so, else the fallback),
* ``eager``     the pure-PyTorch reference,
* ``compiled``  ``torch.compile(reference)``,
* ``gemms``     the bare GEMMs the fused math needs (3 forward: scores twice and w M; 8 forward+backward:
                also scores, dO M^T, dS M, dS^T z and w^T dO), a floor for the fused op;
* ``infer``     inference as MemAE evaluates and predicts: the public function without grad, its output and
                per-row entropy (forward only: no fwd+bwd figure; the peak is that forward's);
* ``infer-weights`` the same figures the way evaluation got them before the op returned per-row entropy:
                the reference with ``return_weights=True`` and the entropy of each (N, K) weight row.

    python benchmarks/bm_memory_address.py                       # CPU, (8192, 500, 64) fp32, 2 threads
    python benchmarks/bm_memory_address.py --device cuda         # the issue's H100 shapes, bf16 and fp32
    python benchmarks/bm_memory_address.py --shape 7168,2000,256 --dtype bfloat16 --device cuda

Peak memory is the extra memory allocated during one call: the CUDA caching allocator's peak on a GPU;
on the CPU the torch profiler's allocation trace (allocations at an op's start, frees at its end).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, bench_device, peak_memory, pick_shapes, print_table, time_fn  # noqa: E402

from reconad.ops import backend, memory_address, memory_address_reference  # noqa: E402

__all__ = ["main"]

CPU_SHAPES = [(8192, 500, 64)]
CUDA_SHAPES = [(65536, 2000, 256), (7168, 2000, 256), (65536, 100, 64)]


def _cpu_peak_memory(fn: Callable[[], object]) -> int:
    """Extra peak bytes allocated on the CPU during fn(), from the profiler's allocation trace."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    deltas = []
    for e in prof.events():
        d = e.self_cpu_memory_usage
        if d:
            deltas.append((e.time_range.start if d > 0 else e.time_range.end, d))
    cur = peak = 0
    for _, d in sorted(deltas):
        cur += d
        peak = max(peak, cur)
    return peak


def _peak(fn: Callable[[], object], device: torch.device) -> int | None:
    if device.type == "cuda":
        return peak_memory(fn, device)
    try:
        return _cpu_peak_memory(fn)
    except Exception:  # noqa: BLE001 - the profiler is optional here; the times still stand
        return None


def _inputs(n: int, k: int, c: int, dtype: torch.dtype, device: torch.device, grad: bool):
    z = torch.randn(n, c, device=device, dtype=dtype, requires_grad=grad)
    memory = torch.randn(k, c, device=device, dtype=dtype, requires_grad=grad)
    return z, memory


def _impls(n: int, k: int, c: int, dtype: torch.dtype, device: torch.device, lam: float, similarity: str):
    z, memory = _inputs(n, k, c, dtype, device, grad=True)
    g_out = torch.randn(n, c, device=device, dtype=dtype)
    compiled = torch.compile(memory_address_reference)

    def fwd(f):
        def run():
            with torch.no_grad():
                return f(z, memory, lam, similarity)
        return run

    def fwd_bwd(f):
        def run():
            res = f(z, memory, lam, similarity)
            torch.autograd.backward((res.output, res.entropy), (g_out, torch.ones((), device=device, dtype=dtype)))
            z.grad = memory.grad = None
        return run

    a, b = torch.randn(n, c, device=device, dtype=dtype), torch.randn(k, c, device=device, dtype=dtype)
    s, dn = torch.empty(n, k, device=device, dtype=dtype), torch.empty(n, c, device=device, dtype=dtype)
    dk = torch.empty(k, c, device=device, dtype=dtype)

    def gemms_fwd():
        torch.mm(a, b.t(), out=s)
        torch.mm(a, b.t(), out=s)
        torch.mm(s, b, out=dn)

    def gemms_fwd_bwd():
        gemms_fwd()
        torch.mm(a, b.t(), out=s)
        torch.mm(a, b.t(), out=s)
        torch.mm(s, b, out=dn)
        torch.mm(s.t(), a, out=dk)
        torch.mm(s.t(), a, out=dk)

    zi, mi = z.detach(), memory.detach()

    def infer():
        with torch.no_grad():
            res = memory_address(zi, mi, lam, similarity)
            return res.output, res.row_entropy

    def infer_weights():
        with torch.no_grad():
            res = memory_address(zi, mi, lam, similarity, return_weights=True)
            return res.output, -(res.weights * torch.log(res.weights.clamp_min(1e-30))).sum(1)

    return {
        "infer": (infer, None),
        "infer-weights": (infer_weights, None),
        "op": (fwd(memory_address), fwd_bwd(memory_address)),
        "eager": (fwd(memory_address_reference), fwd_bwd(memory_address_reference)),
        "compiled": (fwd(compiled), fwd_bwd(compiled)),
        "gemms": (gemms_fwd, gemms_fwd_bwd),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", action="append", help="N,K,C (repeatable); default: the device's shapes")
    p.add_argument("--dtype", action="append", choices=["float32", "bfloat16", "float16", "float64"],
                   help="repeatable; default float32 on the CPU, bfloat16 and float32 on CUDA")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, the issue's CPU goal)")
    p.add_argument("--similarity", default="cosine", choices=["cosine", "dot"])
    p.add_argument("--shrink", type=float, default=None, help="shrink threshold (default 1/K, MemAE's scale)")
    p.add_argument("--impl", action="append", choices=["op", "infer", "infer-weights", "eager", "compiled", "gemms"],
                   help="repeatable; default all")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (fp32 on CUDA)")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    device = bench_device(args.device, args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shapes = pick_shapes(args.shape, device, CPU_SHAPES, CUDA_SHAPES)
    dtypes = args.dtype or (["bfloat16", "float32"] if device.type == "cuda" else ["float32"])
    impls = args.impl or ["op", "infer", "infer-weights", "eager", "compiled", "gemms"]
    op_backend = backend("memory_address", device.type)

    rows: list[dict] = []
    for n, k, c in shapes:
        lam = args.shrink if args.shrink is not None else 1.0 / k
        for dt in dtypes:
            dtype = getattr(torch, dt)
            table = _impls(n, k, c, dtype, device, lam, args.similarity)
            for name in impls:
                f, fb = table[name]
                try:
                    repeat = 5 if device.type == "cpu" else 20
                    t_f = time_fn(f, device, warmup=2, repeat=repeat)
                    t_fb = time_fn(fb, device, warmup=2, repeat=repeat) if fb is not None else float("nan")
                    mem = _peak(fb if fb is not None else f, device)
                except Exception as exc:  # noqa: BLE001 - e.g. torch.compile unavailable: report, go on
                    print(f"{name} {n},{k},{c} {dt}: failed ({type(exc).__name__}: {exc})", file=sys.stderr)
                    continue
                rows.append({
                    "impl": name + (f" ({op_backend})" if name in ("op", "infer") else ""),
                    "N,K,C": f"{n},{k},{c}", "dtype": dt,
                    "fwd_ms": t_f * 1e3, "fwd_bwd_ms": t_fb * 1e3,
                    "peak_MiB": (mem / 2**20) if mem is not None else float("nan"),
                })
    print_table(f"memory_address on {device} ({args.similarity}, lambda = {'1/K' if args.shrink is None else args.shrink}"
                f"{', TF32' if args.tf32 else ''})", rows)
    if rows and not args.no_record:
        by = {(r["N,K,C"], r["dtype"]): [] for r in rows}
        for r in rows:
            by[(r["N,K,C"], r["dtype"])].append(
                f"{r['impl']} {r['fwd_ms']:.3g}" + ("" if math.isnan(r["fwd_bwd_ms"]) else f"/{r['fwd_bwd_ms']:.3g}")
                + " ms"
                + ("" if math.isnan(r["peak_MiB"]) else f" {r['peak_MiB']:.0f} MiB"))
        figures = "; ".join(f"({key[0]}) {key[1]}: " + ", ".join(v) for key, v in by.items())
        append_results("memory_address fwd/fwd+bwd, extra peak", device, figures)
    return rows


if __name__ == "__main__":
    main()
