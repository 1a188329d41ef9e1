"""The autoencoder of Table 1 as plain modules: a conv / max-pool encoder with stacked dilated convolutions
(SDC) and a transposed-convolution decoder. Every convolution but the last has BN + ReLU; the last is a
1x1 convolution with a sigmoid.

Table 1 is ``width=32, depth=3, sdc_blocks=4, sdc_width=64, sdc_kernel=5, dilations=[1, 2, 4, 8, 16]``
(the defaults); smaller ``width`` / ``sdc_width`` / ``depth`` give versions that train on a CPU. Both parts
are fully convolutional, so any input whose side is a multiple of ``2 ** depth`` goes through (progressive
training feeds smaller crops than the test images).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["SDC", "SelfSupDecoder", "SelfSupEncoder", "conv_bn_relu"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> list[nn.Module]:
    pad = dilation * (kernel // 2)
    return [nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class SDC(nn.Module):
    """Stacked dilated convolution: ``len(dilations)`` parallel ``kernel`` x ``kernel`` convolutions of
    ``width`` filters each, one per dilation rate, concatenated (``width * len(dilations)`` channels), BN + ReLU."""

    def __init__(self, cin: int, width: int, kernel: int = 5, dilations: Sequence[int] = (1, 2, 4, 8, 16)) -> None:
        super().__init__()
        if kernel % 2 == 0 or kernel < 1:
            raise ValueError(f"SDC kernel must be odd and positive (same-size output), got {kernel}")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"SDC dilations must be positive ints, got {list(dilations)}")
        self.dilations = [int(d) for d in dilations]
        self.branches = nn.ModuleList(
            nn.Conv2d(cin, width, kernel, padding=d * (kernel // 2), dilation=d, bias=False) for d in self.dilations)
        self.bn = nn.BatchNorm2d(width * len(self.dilations))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([conv(x) for conv in self.branches], 1)))


class SelfSupEncoder(nn.Module):
    """Table 1's encoder: ``depth`` levels of two 3x3 convolutions (``width * 2**level`` filters) and a 2x2
    max-pool, then ``sdc_blocks`` SDC blocks; features ``(sdc_width * len(dilations), H / 2**depth, W / 2**depth)``."""

    def __init__(self, in_channels: int, image_size: int, width: int = 32, depth: int = 3, sdc_blocks: int = 4,
                 sdc_width: int = 64, sdc_kernel: int = 5, dilations: list[int] = (1, 2, 4, 8, 16)) -> None:
        super().__init__()
        if width < 1 or sdc_width < 1 or depth < 1 or sdc_blocks < 0:
            raise ValueError(f"selfsup encoder: width, sdc_width and depth must be >= 1 and sdc_blocks >= 0, got "
                             f"width={width}, sdc_width={sdc_width}, depth={depth}, sdc_blocks={sdc_blocks}")
        self.size_multiple = 2 ** depth
        if image_size % self.size_multiple:
            raise ValueError(f"selfsup encoder: image_size {image_size} must be a multiple of 2**depth = "
                             f"{self.size_multiple} (depth={depth} max-pools); change data.image_size or depth")
        layers: list[nn.Module] = []
        prev = in_channels
        for level in range(depth):
            c = width * 2 ** level
            layers += conv_bn_relu(prev, c) + conv_bn_relu(c, c) + [nn.MaxPool2d(2, 2)]
            prev = c
        for _ in range(sdc_blocks):
            layers.append(SDC(prev, sdc_width, sdc_kernel, dilations))
            prev = sdc_width * len(dilations)
        self.body = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(f"selfsup encoder: input {tuple(x.shape[-2:])} must have sides that are multiples "
                             f"of {self.size_multiple}")
        return self.body(x)


class SelfSupDecoder(nn.Module):
    """Table 1's decoder: a 3x3 convolution of ``width * 2**depth`` filters, then per level a 3x3 / 2 transposed
    convolution and two 3x3 convolutions (``c, c, c / 2`` filters for ``c = width * 2**(depth - level)``), and a
    1x1 convolution to the image channels with a sigmoid (no BN there: it can cause gridding, §3.3).

    ``depth`` is read from the features: ``image_size / h`` doublings."""

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        in_shape = tuple(in_shape)
        if len(in_shape) != 3 or in_shape[1] != in_shape[2]:
            raise ValueError(f"selfsup decoder: expects square feature maps (C, h, h), got shape {in_shape}")
        c_in, h = in_shape[0], in_shape[1]
        depth = 0
        while h * 2 ** depth < image_size:
            depth += 1
        if h * 2 ** depth != image_size or depth == 0:
            raise ValueError(f"selfsup decoder: features of side {h} must reach image_size {image_size} by one or "
                             f"more doublings")
        if width < 1:
            raise ValueError(f"selfsup decoder: width must be >= 1, got {width}")
        layers: list[nn.Module] = conv_bn_relu(c_in, width * 2 ** depth)
        prev = width * 2 ** depth
        for level in range(depth):
            c = width * 2 ** (depth - level)
            layers += [nn.ConvTranspose2d(prev, c, 3, stride=2, padding=1, output_padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            layers += conv_bn_relu(c, c) + conv_bn_relu(c, c // 2)
            prev = c // 2
        layers += [nn.Conv2d(prev, out_channels, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.depth = depth

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
