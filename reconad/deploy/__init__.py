"""``reconad.deploy``: ``export_onnx`` (a fitted detector to ONNX with proven parity) and ``OnnxInferencer``,
which runs an exported model under ONNX Runtime without PyTorch (docs/deploy.md). This package's ``__init__``
imports nothing heavy: the names load on first use, so the inferencer works where torch is not installed."""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ExportError", "ExportReport", "OnnxInferencer", "export_onnx"]

_WHERE = {"ExportError": "export", "ExportReport": "export", "export_onnx": "export", "OnnxInferencer": "inferencer"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'reconad.deploy' has no attribute {name!r}")
