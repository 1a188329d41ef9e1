"""MMAE's video variant (paper §4.2) as reconad components: 3-D convolution encoders and decoder over clips of
grey frames, K = 4 scales, one memory per scale (the ``mmae_multiscale`` memory).

The core ``video`` dataset with ``unit: clips`` gives each clip as one image whose channels are its frames
(``(clip_frames, S, S)``); encoder ``mmae_video`` reads it as a ``(1, clip_frames, S, S)`` volume and decoder
``mmae_video`` returns the clip in the same form, so the engine trains it like any model (``reconad run
configs/mmae/video.yaml``) and ``reconad video RUN FRAMES`` scores a video with it: a frame's score is its
reconstruction error averaged over the clips that hold it.
"""
from __future__ import annotations

from typing import Literal

import torch

from .model import MultiScaleDecoder, MultiScaleEncoder

__all__ = ["VideoMMAEDecoder", "VideoMMAEEncoder"]


class VideoMMAEEncoder(MultiScaleEncoder):
    """K 3-D encoders over a clip of ``in_channels`` grey frames stacked as channels: frames resized to
    image_size * gamma^(i-1), time kept, each down to ``(channels, feature_frames, s, s)``; a list of K
    (``feature_frames`` null: 2, or 1 for a one-frame clip)."""

    def __init__(self, in_channels: int, image_size: int, scales: int = 4, gamma: float = 0.5,
                 feature_size: int | None = None, feature_frames: int | None = None, channels: int = 32,
                 base_width: int = 16, max_width: int = 64) -> None:
        feature_frames = feature_frames or min(2, in_channels)
        super().__init__(1, image_size, scales, gamma, feature_size, channels, base_width, max_width,
                         dims=3, frames=in_channels, feature_frames=feature_frames)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.frames:
            raise ValueError(f"mmae_video encoder: expects clips of {self.frames} grey frames stacked as channels "
                             f"(B, {self.frames}, S, S), got {tuple(x.shape)}")
        return super().forward(x.unsqueeze(1))


class VideoMMAEDecoder(MultiScaleDecoder):
    """The attention fuser and a 3-D pixel-shuffle decoder back to the clip, ``(B, frames, S, S)`` (frames
    = ``out_channels``, the clip length); ``scale_weights`` ``(B, K, t, s, s)``."""

    def __init__(self, in_shape: list, out_channels: int, image_size: int,
                 fuser: Literal["attention", "mean"] = "attention", fuser_hidden: int | None = None,
                 base_width: int = 16, max_width: int = 64) -> None:
        shape = in_shape[0] if in_shape and isinstance(in_shape[0], (list, tuple)) else in_shape
        if len(shape) != 4:
            raise ValueError(f"mmae_video decoder: expects per-scale features (C, t, s, s), got {in_shape!r}")
        super().__init__(in_shape, 1, image_size, fuser, fuser_hidden, base_width, max_width, dims=3,
                         frames=out_channels, start_frames=shape[1])

    def forward(self, features: torch.Tensor | list[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(features)
        return {**out, "recon": out["recon"].squeeze(1)}
