"""reconad-maskedmem: OLED's learned Mask Module in front of MMAE's multi-scale memories and decoder, trained
adversarially as OLED trains its masker. A third-party reconad plugin and the worked example of
docs/plugins.md."""
from __future__ import annotations

from .objective import MaskedMemoryObjective

__all__ = ["MaskedMemoryObjective"]
__version__ = "0.1.0"
