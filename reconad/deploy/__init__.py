"""``reconad.deploy``: export a fitted detector to ONNX with proven parity (docs/deploy.md)."""
from __future__ import annotations

from .export import ExportError, ExportReport, export_onnx

__all__ = ["ExportError", "ExportReport", "export_onnx"]
