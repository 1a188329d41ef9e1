"""reconad: reconstruction-based visual anomaly detection with pluggable components."""
from __future__ import annotations

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
