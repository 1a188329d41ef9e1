"""reconad-oddobjects: ODDObjects (paper 000, arXiv 2104.12300), unsupervised anomaly detection on masked
objects with AE, CAE, CVAE and memory-augmented CAE models; see README.md."""
from __future__ import annotations

from .model import AEDecoder, AEEncoder, CAEDecoder, CAEEncoder, CVAEEncoder, MemCAEDecoder, MemCAEEncoder, \
    conv_out, plan_stages
from .objective import ELBOObjective, ReconstructionEntropyObjective
from .scorer import ODDScorer, is_anomaly

__all__ = ["AEDecoder", "AEEncoder", "CAEDecoder", "CAEEncoder", "CVAEEncoder", "ELBOObjective", "MemCAEDecoder",
           "MemCAEEncoder", "ODDScorer", "ReconstructionEntropyObjective", "conv_out", "is_anomaly", "plan_stages"]
__version__ = "0.1.0"
