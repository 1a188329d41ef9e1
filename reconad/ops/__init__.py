"""reconad's operators: one module per op, each with a compiled kernel (C++ / CUDA, from ``csrc/<op>/``)
and a pure-PyTorch fallback. ``backend(op, device_type)`` tells which one runs."""
from __future__ import annotations

from ._extension import backend, backend_reason, extension_info, load_extension, registered_ops
from .memory_address import MemoryAddressOutput, memory_address, memory_address_reference

__all__ = [
    "MemoryAddressOutput",
    "backend",
    "backend_reason",
    "extension_info",
    "load_extension",
    "memory_address",
    "memory_address_reference",
    "registered_ops",
]
