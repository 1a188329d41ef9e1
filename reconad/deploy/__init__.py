"""``reconad.deploy``: ONNX export (issue #24) and ``OnnxInferencer``, which runs an exported model under ONNX
Runtime without PyTorch. This package's ``__init__`` imports nothing heavy: importing
``reconad.deploy.inferencer`` must work where torch is not installed."""
from __future__ import annotations

from typing import Any

__all__ = ["OnnxInferencer"]


def __getattr__(name: str) -> Any:
    if name == "OnnxInferencer":
        from .inferencer import OnnxInferencer

        return OnnxInferencer
    raise AttributeError(f"module 'reconad.deploy' has no attribute {name!r}")
