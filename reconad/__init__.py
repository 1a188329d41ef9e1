"""reconad: reconstruction-based visual anomaly detection with pluggable components."""
from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["Detector", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # ``from reconad import Detector`` imports torch and the engine; a plain ``import reconad`` (plugins,
    # ``reconad info``) stays light
    if name == "Detector":
        from .api import Detector

        return Detector
    raise AttributeError(f"module 'reconad' has no attribute {name!r}")
