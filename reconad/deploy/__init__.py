"""``reconad.deploy``: export to ONNX (work in progress, issue #24)."""
from __future__ import annotations

__all__: list[str] = []
