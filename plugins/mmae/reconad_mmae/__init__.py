"""reconad-mmae: MMAE (Multi-scale Memories and Attention Autoencoder, paper 002) as reconad components.

Registered: encoder ``mmae``, memory ``mmae_multiscale``, decoder ``mmae``, and the 3-D video variant's
encoder and decoder ``mmae_video`` (``reconad_mmae.video``; trained with ``reconad run configs/mmae/video.yaml``,
scored with ``reconad video``).
"""
from __future__ import annotations

from .model import (MMAEDecoder, MMAEEncoder, MultiScaleDecoder, MultiScaleEncoder, MultiScaleMemory,
                    ScaleAttentionFuser, pixel_shuffle_nd, scale_resolutions)

__all__ = ["MMAEDecoder", "MMAEEncoder", "MultiScaleDecoder", "MultiScaleEncoder", "MultiScaleMemory",
           "ScaleAttentionFuser", "pixel_shuffle_nd", "scale_resolutions"]
__version__ = "0.1.0"
