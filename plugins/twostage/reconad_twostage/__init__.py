"""reconad plugin: the two-stage autoencoder for visual anomaly detection (Zhu et al., paper 003)."""
from __future__ import annotations

from .model import DCGANDecoder, DualDecoder, RotNetEncoder
from .objective import TwoStageObjective
from .pretext import PRETEXT_TASKS, RotationPretext, register_pretext, rotate_batch
from .scorer import TwoStageScorer

__all__ = ["DCGANDecoder", "DualDecoder", "PRETEXT_TASKS", "RotNetEncoder", "RotationPretext", "TwoStageObjective",
           "TwoStageScorer", "register_pretext", "rotate_batch"]
