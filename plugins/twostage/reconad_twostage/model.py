"""The two-stage autoencoder's networks (Zhu et al., paper 003), plain ``nn.Module`` s.

* ``RotNetEncoder``: ResNet-18 (He et al.; torchvision's layout and parameter names) whose rotation head
  ``fc`` is RotNet's classifier (Gidaris et al.). ``forward`` returns the representation z (the globally
  pooled last stage, eq. 5); ``pretext_logits`` the rotation logits (eq. 1).
* ``DCGANDecoder``: GANomaly's generator decoder (Akcay et al.), the paper's decoder structure.
* ``DualDecoder``: two independent ``DCGANDecoder`` s reading the same z (eqs. 6-7).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "DCGANDecoder", "DualDecoder", "RotNetEncoder"]


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block (torchvision.models.resnet.BasicBlock)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class RotNetEncoder(nn.Module):
    """ResNet-18 RotNet encoder: image -> representation z ``(B, 8 * width)``; its rotation head is kept here
    so that it is saved with the encoder in checkpoints.

    ``stem="small"`` (default) adapts ResNet-18 to 28-32 px inputs as CIFAR ResNets do: a 3x3 stride-1 first
    convolution and no max-pool, so the four stages run at 32, 16, 8, 4 px instead of 8, 8, 4, 2 (ImageNet's
    7x7 stride-2 stem + max-pool would leave 1-2 px maps). ``stem="imagenet"`` with ``width=64`` is exactly
    ``torchvision.models.resnet18(weights=None, num_classes=rotations)`` (same parameter names; no pretrained
    weights anywhere). ``stem_stride=2`` makes the small stem halve the input (stages at 16, 8, 4, 2 px for
    32 px inputs, a quarter of the compute). ``width`` is the first stage's channel count (ResNet-18: 64; stages use 1, 2, 4, 8x).
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 64,
                 stem: Literal["small", "imagenet"] = "small", blocks: list[int] = (2, 2, 2, 2),
                 stem_stride: int = 1, rotations: int = 4) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"twostage_rotnet: width must be >= 1, got {width}")
        if len(blocks) != 4 or any(b < 1 for b in blocks):
            raise ValueError(f"twostage_rotnet: blocks must be four positive counts (ResNet-18: [2, 2, 2, 2]), "
                             f"got {list(blocks)}")
        if rotations < 2:
            raise ValueError(f"twostage_rotnet: rotations must be >= 2, got {rotations}")
        if stem == "small":
            if stem_stride not in (1, 2):
                raise ValueError(f"twostage_rotnet: stem_stride must be 1 or 2, got {stem_stride}")
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            raise ValueError(f"twostage_rotnet: stem must be 'small' or 'imagenet', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        widths = [width, 2 * width, 4 * width, 8 * width]
        prev = width
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layer = [BasicBlock(prev, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            prev = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, rotations)   # RotNet's classifier over the rotations (eq. 1)
        self.out_dim = prev
        for m in self.modules():                # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.avgpool(h).flatten(1)

    def pretext_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation logits ``(B, rotations)``: F(x | theta) of eq. 1 before the softmax."""
        return self.fc(self.forward(x))


class DCGANDecoder(nn.Module):
    """GANomaly's DCGAN decoder: z as a ``nz x 1 x 1`` map (nz = the features' size, flattened), a 4x4
    transposed convolution to ``width * image_size / 8`` channels at 4 px, then stride-2 transposed
    convolutions (BN, ReLU) halving the channels and doubling the size up to ``image_size``.

    ``image_size`` must be 4 * 2^k >= 8 (GANomaly: a multiple of 16; MNIST is resized to 32). GANomaly ends in
    a tanh on [-1, 1] images; reconad's images are in [0, 1], so ``output="sigmoid"`` (= (tanh(x/2) + 1) / 2)
    is the default.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int, width: int = 64,
                 extra_layers: int = 0, output: Literal["sigmoid", "tanh", "none"] = "sigmoid") -> None:
        super().__init__()
        k = math.log2(image_size / 4) if image_size >= 8 else -1
        if k < 1 or k != int(k):
            raise ValueError(f"DCGAN decoder: image_size must be 4 * 2^k (8, 16, 32, 64, ...), got {image_size}; "
                             f"resize the images (e.g. data.image_size: 32 for digits, as GANomaly does)")
        self.nz = int(math.prod(in_shape))
        ch = width * image_size // 8           # GANomaly: ngf / 2 doubled until 4 px reaches image_size
        layers: list[nn.Module] = [nn.ConvTranspose2d(self.nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch),
                                   nn.ReLU(True)]
        size = 4
        while size < image_size // 2:
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch, size = ch // 2, size * 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        layers.append(nn.ConvTranspose2d(ch, out_channels, 4, 2, 1, bias=False))
        if output == "sigmoid":
            layers.append(nn.Sigmoid())
        elif output == "tanh":
            layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


class DualDecoder(nn.Module):
    """Two parallel decoders of one structure and no shared parameter (eqs. 6-7): ``{"recon": G1(z),
    "recon_ssim": G2(z)}``; G1 is trained with MSE (eq. 8), G2 with -SSIM (eq. 9) by the ``twostage``
    objective."""

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int, width: int = 64,
                 extra_layers: int = 0, output: Literal["sigmoid", "tanh", "none"] = "sigmoid") -> None:
        super().__init__()
        self.mse = DCGANDecoder(in_shape, out_channels, image_size, width, extra_layers, output)
        self.ssim = DCGANDecoder(in_shape, out_channels, image_size, width, extra_layers, output)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"recon": self.mse(z), "recon_ssim": self.ssim(z)}
