"""The training augmentations of ODDObjects §3.3, as one batched affine warp in torch.

Each image gets a random rotation within +-5 degrees, a shift within +-1 % of its width and height, a zoom
of 100-125 %, a horizontal flip with probability 1/2 and a brightness factor within +-10 %. The zoom follows
Keras' ``ImageDataGenerator(zoom_range=[1.0, 1.25])``, which the paper's TensorFlow code used: the sampled
field of view is 100-125 % of the image, so the object shrinks by up to 1/1.25 and is never cut off. Pixels
warped in from outside the image are 0, the masked objects' background.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ObjectAugment"]


class ObjectAugment:
    """``augment(images)``: (B, C, H, W) or (C, H, W) in [0, 1] -> the same shape, randomly transformed.

    Random numbers come from ``generator`` when given, else from torch's global RNG (which the trainer
    seeds, so training runs are reproducible and resume exactly).
    """

    def __init__(self, rotation: float = 5.0, shift: float = 0.01, zoom: tuple[float, float] = (1.0, 1.25),
                 brightness: float = 0.1, hflip: float = 0.5) -> None:
        if rotation < 0 or shift < 0 or brightness < 0 or not 0 <= hflip <= 1:
            raise ValueError(f"ObjectAugment: rotation, shift and brightness must be >= 0 and hflip in [0, 1], "
                             f"got rotation={rotation}, shift={shift}, brightness={brightness}, hflip={hflip}")
        if not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"ObjectAugment: zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.rotation, self.shift, self.zoom = rotation, shift, (float(zoom[0]), float(zoom[1]))
        self.brightness, self.hflip = brightness, hflip

    def __repr__(self) -> str:
        return (f"ObjectAugment(rotation={self.rotation}, shift={self.shift}, zoom={self.zoom}, "
                f"brightness={self.brightness}, hflip={self.hflip})")

    def theta(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(affine matrices (n, 2, 3) for ``affine_grid``, brightness factors (n,)), in float64 on the CPU."""
        u = torch.rand(n, 6, generator=generator, dtype=torch.float64)
        angle = math.radians(self.rotation) * (2 * u[:, 0] - 1)
        zoom = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * u[:, 1]
        # normalised coordinates span 2 per side, so a shift of s of the side is 2 s
        tx, ty = 2 * self.shift * (2 * u[:, 2] - 1), 2 * self.shift * (2 * u[:, 3] - 1)
        flip = torch.where(u[:, 4] < self.hflip, -1.0, 1.0).to(torch.float64)
        bright = 1.0 + self.brightness * (2 * u[:, 5] - 1)
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        # output (x, y) samples input R(angle) * zoom * (flip * x, y) + t
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                             torch.stack([sin * flip, cos, ty], 1)], 1)
        return theta, bright

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        if x.dim() != 4:
            raise ValueError(f"ObjectAugment: expected (B, C, H, W) or (C, H, W) images, got {tuple(images.shape)}")
        theta, bright = self.theta(x.shape[0], generator)
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = (out * bright.to(x.device, x.dtype).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
        return out[0] if single else out
