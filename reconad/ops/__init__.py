"""reconad's operators: one module per op, each with a compiled kernel (C++ / CUDA, from ``csrc/<op>/``)
and a pure-PyTorch fallback. ``backend(op, device_type)`` tells which one runs."""
from __future__ import annotations

from ._extension import backend, backend_reason, extension_info, load_extension, registered_ops
from .memory_address import MemoryAddressOutput, memory_address, memory_address_reference
from .topk_mask import TOPK_MASK_EPS, topk_mask
from .pro_curve import ProCurveResult, pro_curve, pro_curve_reference

__all__ = [
    "MemoryAddressOutput",
    "ProCurveResult",
    "TOPK_MASK_EPS",
    "backend",
    "backend_reason",
    "extension_info",
    "load_extension",
    "memory_address",
    "memory_address_reference",
    "pro_curve",
    "pro_curve_reference",
    "registered_ops",
    "topk_mask",
]
