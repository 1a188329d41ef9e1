"""reconad-selfsup: Bauer's self-supervised autoencoder training for visual anomaly detection (paper 004).

Distorted inputs (elastically deformed, shape-masked patches, :func:`reconad_selfsup.distort.distort`), the
objectives (1)-(3) (:mod:`reconad_selfsup.losses`), the Table 1 dilated-convolution autoencoder
(:mod:`reconad_selfsup.model`), progressive input sizes and flips / rotations (:mod:`reconad_selfsup.objective`),
the channel-L2 heatmap scorer, and the connected-component area rule (:mod:`reconad_selfsup.evaluate`).
"""
from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
