"""Flush subnormal floats to zero on the CPU, on every thread torch computes on.

Floats below the smallest normal (1.2e-38 in float32) are computed in microcode on x86 cores: a network whose
weights decay toward zero (a branch nothing trains any more) runs 30x slower on them (``benchmarks/
bm_flush_denormal.py``). ``torch.set_flush_denormal`` turns on flush-to-zero and denormals-are-zero, but the mode is
per thread and it sets the calling thread's only: torch's other intra-op threads keep computing subnormals.
The compiled op (``csrc/flush_denormal/``) sets it on each thread of torch's OpenMP team as well; without
reconad._C the fallback is ``torch.set_flush_denormal``, the calling thread's share of the work.
"""
from __future__ import annotations

import torch

from ._extension import load_extension

__all__ = ["every_thread", "set_flush_denormal"]


def every_thread() -> bool:
    """Whether :func:`set_flush_denormal` reaches torch's intra-op threads (reconad._C has the op)."""
    return load_extension() and hasattr(torch.ops.reconad, "set_flush_denormal")


def set_flush_denormal(on: bool) -> bool:
    """Flush subnormals to zero (``on``) or compute them (the default) on the calling thread and, with
    reconad._C, every intra-op thread. False where the CPU has no such mode (nothing changed)."""
    if every_thread():
        return bool(torch.ops.reconad.set_flush_denormal(on))
    return bool(torch.set_flush_denormal(on))
