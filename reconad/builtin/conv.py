"""The built-in convolutional encoder and decoder (strided 3x3 convolutions, BN, ReLU / LeakyReLU)."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

__all__ = ["ConvDecoder", "ConvEncoder", "halvings"]


def halvings(size: int, n: int) -> list[int]:
    """Spatial sizes after 0..n stride-2 convolutions (kernel 3, padding 1): each is ceil(prev / 2)."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _act(negative_slope: float) -> nn.Module:
    return nn.ReLU(inplace=True) if negative_slope == 0 else nn.LeakyReLU(negative_slope, inplace=True)


class ConvEncoder(nn.Module):
    """Strided-convolution encoder: each block halves the resolution; an optional dense bottleneck."""

    def __init__(self, in_channels: int, image_size: int, channels: list[int] = (32, 64, 128),
                 latent_dim: int | None = None, negative_slope: float = 0.0, batch_norm: bool = True) -> None:
        super().__init__()
        if not channels:
            raise ValueError("conv encoder: channels must list at least one width")
        layers: list[nn.Module] = []
        prev = in_channels
        for width in channels:
            layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [_act(negative_slope)]
            prev = width
        self.features = nn.Sequential(*layers)
        side = halvings(image_size, len(channels))[-1]
        self.to_latent = nn.Linear(prev * side * side, latent_dim) if latent_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.to_latent(h.flatten(1)) if self.to_latent is not None else h


class ConvDecoder(nn.Module):
    """Transposed-convolution decoder mirroring ``ConvEncoder``: each block doubles the resolution.

    From feature maps ``(C, h, w)`` it upsamples until ``image_size`` (h must be one of the encoder's
    sizes); from vectors ``(D,)`` a dense layer first makes ``channels[0]`` maps of the size that
    ``len(channels)`` doublings bring to ``image_size``.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int,
                 channels: list[int] | None = None, negative_slope: float = 0.0, batch_norm: bool = True,
                 output: Literal["sigmoid", "tanh", "none"] = "sigmoid") -> None:
        super().__init__()
        in_shape = tuple(in_shape)
        if len(in_shape) == 3:
            c, h, w = in_shape
            sizes = halvings(image_size, 16)
            if h != w or h not in sizes:
                raise ValueError(f"conv decoder: cannot upsample features of shape {in_shape} to "
                                 f"{image_size}x{image_size} by doublings (expected square maps of a size in "
                                 f"{sorted(set(sizes), reverse=True)})")
            n = sizes.index(h)
            channels = list(channels) if channels else [max(c // 2 ** i, 8) for i in range(n)]
            if len(channels) != n:
                raise ValueError(f"conv decoder: {n} doublings bring {h} to {image_size}, so channels needs "
                                 f"{n} widths, got {channels}")
            self.from_latent = None
            prev = c
        elif len(in_shape) == 1:
            channels = list(channels) if channels else [128, 64, 32]
            n = len(channels)
            sizes = halvings(image_size, n)
            self.start = (channels[0], sizes[-1], sizes[-1])
            self.from_latent = nn.Sequential(nn.Linear(in_shape[0], channels[0] * sizes[-1] ** 2), _act(negative_slope))
            prev = channels[0]
        else:
            raise ValueError(f"conv decoder: expects features (C, h, w) or (D,), got shape {in_shape}")
        targets = list(reversed(sizes[:n]))  # sizes after each doubling
        cur = sizes[n]
        layers: list[nn.Module] = []
        for width, target in zip(channels, targets):
            layers += [nn.ConvTranspose2d(prev, width, 3, stride=2, padding=1, output_padding=target - (2 * cur - 1),
                                          bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [_act(negative_slope)]
            prev, cur = width, target
        layers.append(nn.Conv2d(prev, out_channels, 3, padding=1))
        if output == "sigmoid":
            layers.append(nn.Sigmoid())
        elif output == "tanh":
            layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.from_latent is not None:
            z = self.from_latent(z).view(z.shape[0], *self.start)
        return self.body(z)
