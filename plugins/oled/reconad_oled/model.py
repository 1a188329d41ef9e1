"""OLED's networks (paper 001, §3.3-3.4) as plain ``nn.Module`` s: the Mask Module (mask generator + threshold
unit) and the Reconstructor's encoder and decoder.

Scale: reconad hands components images in [0, 1]; the paper works in [-1, 1] so that a hidden pixel sits at the
midpoint 0 of the colour range. The conversion happens inside these modules:

* ``MaskModule`` computes ``x_m = x' * MM(x)`` with ``x' = 2x - 1`` (eq. 3, the one-channel mask broadcast over
  every channel) and returns it in reconad's scale, ``(x_m + 1) / 2``: hidden pixels are exactly 0.5.
* ``ReconstructorEncoder`` maps its input to ``2x - 1`` first; ``ReconstructorDecoder`` clips its last
  convolution to [-1, 1] (§3.3) and returns ``(y + 1) / 2``.

So ``outputs["recon"]`` and ``outputs["input"]`` are both in [0, 1] (every reconad scorer works unchanged) and
the OLED losses convert differences back with a factor 2 (``reconad_oled.losses``).
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from reconad.builtin.conv import ConvDecoder, ConvEncoder
from reconad.ops import topk_mask

__all__ = ["MaskGenerator", "MaskModule", "ReconstructorDecoder", "ReconstructorEncoder", "reconstruct",
           "to_signed", "to_unit"]


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (the paper's scale)."""
    return x * 2.0 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (reconad's scale)."""
    return (x + 1.0) * 0.5


class MaskGenerator(nn.Module):
    """MG (§3.4.1): a small convolutional autoencoder with a spatial bottleneck (no dense layer, no max pooling),
    BN + LeakyReLU in every block but the last, whose convolution ends in a ReLU. Returns the activation map
    ``A`` (B, 1, H, W) and its pre-ReLU values ``z`` (same order as ``A`` where ``A > 0``)."""

    def __init__(self, in_channels: int, image_size: int, channels: Sequence[int] = (16, 32),
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ValueError("oled mask generator: channels must list at least one width")
        self.encoder = ConvEncoder(in_channels, image_size, channels, latent_dim=None,
                                   negative_slope=negative_slope, batch_norm=True)
        with torch.no_grad():
            side = self.encoder(torch.zeros(1, in_channels, image_size, image_size)).shape[-1]
        # the decoder mirrors the encoder; its last 3x3 conv (to one channel) is the ReLU block
        self.decoder = ConvDecoder((channels[-1], side, side), 1, image_size, channels=list(reversed(channels)),
                                   negative_slope=negative_slope, batch_norm=True, output="none")

    def forward(self, x_signed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.decoder(self.encoder(x_signed))
        return torch.relu(z), z


class MaskModule(nn.Module):
    """OLED's Mask Module (§3.4) as a reconad masker: ``forward(x) -> (x_masked, mask)``.

    The threshold unit is ``reconad.ops.topk_mask`` (eq. 2): it hides the ``1 - keep`` fraction of pixels with
    the largest activations (``keep`` = t = 0.875 in the paper) in every image, at training and at test time.
    ``grad`` picks its backward: ``"ste"`` (straight-through, default; the exact derivative of eq. 2 is ~eps/d^2
    and the Mask Module does not learn from it) or ``"exact"``.

    ``rank``: which values the threshold unit ranks. ``"pre_relu"`` (default) ranks the last block's
    pre-activation ``z``; ReLU is monotone, so wherever ``A > 0`` the ranking (hence the mask) is the ranking of
    ``A``, and the pixels a ReLU sets to 0 are ordered by ``z`` instead of all tying at 0. With ``"relu"``
    (``A`` itself, eq. 1 literally) a map with fewer than k positive pixels has threshold s = 0 and eq. 1 hides
    every zero too: the adversary learns to hide most of the image. ``"pre_relu"`` keeps exactly
    k = round((1 - keep) * H * W) pixels hidden per image (bar exact float ties).
    """

    def __init__(self, in_channels: int, image_size: int, keep: float = 0.875,
                 channels: list[int] = (16, 32), negative_slope: float = 0.2,
                 grad: Literal["ste", "exact"] = "ste", rank: Literal["pre_relu", "relu"] = "pre_relu") -> None:
        super().__init__()
        if not 0.0 < float(keep) < 1.0:
            raise ValueError(f"oled masker: keep (the paper's t, fraction of pixels kept) must be in (0, 1), "
                             f"got {keep}")
        self.keep, self.grad, self.rank = float(keep), grad, rank
        self.generator = MaskGenerator(in_channels, image_size, channels, negative_slope)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The activation map ``A`` (B, 1, H, W) for images ``x`` in [0, 1] (§4.5 uses it as a segmentation)."""
        return self.generator(to_signed(x))[0]

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """``MM(x)``: (B, 1, H, W), 0 = hidden, ~1 = kept (``d / (d + eps)``, eq. 2)."""
        a, z = self.generator(to_signed(x))
        ranked = z if self.rank == "pre_relu" else a
        return topk_mask(ranked.float(), keep=self.keep, grad=self.grad).to(x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.mask(x)
        return to_unit(to_signed(x) * m), m


class ReconstructorEncoder(nn.Module):
    """R's encoder (§3.3): strided 3x3 convolutions (no max pooling) with BN + LeakyReLU, then a dense
    bottleneck of ``latent_dim`` units. Takes images in [0, 1], works in [-1, 1]."""

    def __init__(self, in_channels: int, image_size: int, channels: list[int] = (32, 64, 128),
                 latent_dim: int = 64, negative_slope: float = 0.2) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"oled encoder: latent_dim must be >= 1, got {latent_dim}")
        self.body = ConvEncoder(in_channels, image_size, list(channels), latent_dim=latent_dim,
                                negative_slope=negative_slope, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(to_signed(x))


class ReconstructorDecoder(nn.Module):
    """R's decoder (§3.3): a dense layer back to maps, transposed 3x3 convolutions with BN + LeakyReLU, a last
    convolution clipped to [-1, 1]; returned in [0, 1]. Reads ``(D,)`` vectors (R's dense bottleneck)."""

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int,
                 channels: list[int] = (128, 64, 32), negative_slope: float = 0.2) -> None:
        super().__init__()
        if len(tuple(in_shape)) != 1:
            raise ValueError(f"oled decoder: expects the dense bottleneck's vectors (D,), got features of shape "
                             f"{tuple(in_shape)}; use it after the oled encoder (or another dense encoder)")
        self.body = ConvDecoder(tuple(in_shape), out_channels, image_size, channels=list(channels),
                                negative_slope=negative_slope, batch_norm=True, output="none")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_unit(self.body(z).clamp(-1.0, 1.0))


def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``R(x)``: a composed model's encoder -> [memory] -> decoder on ``x`` itself, without its masker
    (``ReconModel.reconstruct``; a DistributedDataParallel wrapper is looked through)."""
    return getattr(model, "module", model).reconstruct(x)
