"""Built-in masker: random square blocks hidden during training (a context-autoencoder baseline)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["RandomBlockMasker"]


class RandomBlockMasker(nn.Module):
    """Hides ``count`` random ``block`` x ``block`` squares per image, filled with ``fill``, while training
    (and at evaluation too when ``at_eval``); the model learns to reconstruct them from their context."""

    def __init__(self, in_channels: int, image_size: int, block: int = 8, count: int = 1, fill: float = 0.5,
                 at_eval: bool = False) -> None:
        super().__init__()
        if not 1 <= block <= image_size:
            raise ValueError(f"random_block masker: block must be in [1, image_size={image_size}], got {block}")
        self.block, self.count, self.fill, self.at_eval = block, count, fill, at_eval

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        mask = torch.ones(b, 1, h, w, device=x.device, dtype=x.dtype)
        if self.training or self.at_eval:
            ys = torch.randint(0, h - self.block + 1, (b, self.count)).tolist()
            xs = torch.randint(0, w - self.block + 1, (b, self.count)).tolist()
            for i in range(b):
                for y0, x0 in zip(ys[i], xs[i]):
                    mask[i, :, y0:y0 + self.block, x0:x0 + self.block] = 0
        return x * mask + self.fill * (1 - mask), mask
