"""reconad-oled: OLED, One-Class Learned Encoder-Decoder with adversarial context masking (Jewell et al.,
WACV 2022; paper 001) as reconad components."""
from __future__ import annotations

from .losses import OLEDTerms, oled_terms
from .model import MaskGenerator, MaskModule, ReconstructorDecoder, ReconstructorEncoder, reconstruct
from .objective import OLEDObjective
from .scorer import OLEDScorer

__all__ = ["MaskGenerator", "MaskModule", "OLEDObjective", "OLEDScorer", "OLEDTerms", "ReconstructorDecoder",
           "ReconstructorEncoder", "oled_terms", "reconstruct"]
__version__ = "0.1.0"
