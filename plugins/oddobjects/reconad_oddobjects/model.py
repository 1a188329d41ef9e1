"""ODDObjects' four autoencoders (paper 000, section 3.2) as plain ``nn.Module`` s: AE, CAE, CVAE, MemCAE.

Every encoder ends in a 32-d latent (a dense layer, no activation); every layer but the last of an encoder or
a decoder is followed by a ReLU (and, in the MemCAE, batch normalisation first). Decoders end in a sigmoid
(the authors train on the logits and read ``sigmoid(logits)`` as the image); they return
``{"recon": sigmoid(logits), "recon_logits": logits}`` so a Bernoulli likelihood can use the logits.

Size rule (how the paper's 256x256 layer lists adapt to 28, 32, 64, ... inputs and to C channels):

* a stride-2 convolution with kernel k is padded by (k - 1) // 2, so a side s becomes ceil(s / 2) for k = 1 or 3
  and floor(s / 2) for k = 4 (``conv_out``);
* the paper's stages are kept from the first while the map they make is at least ``min_size`` (2) pixels; the
  deepest stages are dropped otherwise (``plan_stages``). 28, 32, 64 and 256 all keep every stage:
  CAE/CVAE 28 -> 14 -> 7 -> 4 -> 2, 32 -> 2, 64 -> 4, 256 -> 16; MemCAE 28 -> 14 -> 7 -> 4, 32 -> 4, 64 -> 8,
  256 -> 32. A decoder keeps the mirrored (last) stages of its list;
* each transposed convolution gets the output padding (0 or 1) that brings it back to exactly the size the
  matching encoder stage read, so odd sides (7, 14 -> 28) round-trip;
* the first encoder layer reads C channels and the last decoder layer writes C (the paper's 3).
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

__all__ = ["AEDecoder", "AEEncoder", "CAEDecoder", "CAEEncoder", "CVAEEncoder", "MemCAEDecoder",
           "MemCAEEncoder", "conv_out", "plan_stages"]

Output = Literal["sigmoid", "none"]


def conv_out(size: int, kernel: int) -> int:
    """Side after a stride-2 convolution with kernel ``kernel`` and padding ``(kernel - 1) // 2``."""
    return (size + 2 * ((kernel - 1) // 2) - kernel) // 2 + 1


def plan_stages(image_size: int, kernels: Sequence[int], min_size: int = 2, what: str = "encoder") -> list[int]:
    """Map sides ``[image_size, s1, ..., sn]`` for the first n stride-2 stages that keep ``s_i >= min_size``."""
    if not kernels:
        raise ValueError(f"{what}: needs at least one convolution stage, got kernels {list(kernels)}")
    if any(int(k) < 1 for k in kernels):
        raise ValueError(f"{what}: kernel sizes must be >= 1, got {list(kernels)}")
    sizes = [int(image_size)]
    for k in kernels:
        nxt = conv_out(sizes[-1], int(k))
        if nxt < min_size:
            break
        sizes.append(nxt)
    if len(sizes) == 1:
        raise ValueError(f"{what}: a {image_size}x{image_size} input is too small for even one stride-2 stage "
                         f"(kernel {kernels[0]}) that keeps at least {min_size} pixels; use larger images or "
                         f"a smaller min_size")
    return sizes


def _check_lists(what: str, channels: Sequence[int], kernels: Sequence[int]) -> None:
    if len(channels) != len(kernels) or not channels:
        raise ValueError(f"{what}: channels and kernels must list one entry per stage, got channels "
                         f"{list(channels)} and kernels {list(kernels)}")
    if any(int(c) < 1 for c in channels):
        raise ValueError(f"{what}: channel widths must be >= 1, got {list(channels)}")


def _finish(logits: torch.Tensor, output: Output) -> dict[str, torch.Tensor] | torch.Tensor:
    if output == "sigmoid":
        return {"recon": torch.sigmoid(logits), "recon_logits": logits}
    return logits


def _check_vector(what: str, in_shape: Sequence[int]) -> int:
    in_shape = tuple(in_shape)
    if len(in_shape) != 1:
        raise ValueError(f"{what}: expects latent vectors (D,), got features of shape {in_shape}")
    return int(in_shape[0])


# ---------------------------------------------------------------------------------------------- AE

class AEEncoder(nn.Module):
    """ODDObjects AE encoder: one fully-connected layer from the flattened image to the latent (eq. 1)."""

    def __init__(self, in_channels: int, image_size: int, latent_dim: int = 32) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"odd_ae encoder: latent_dim must be >= 1, got {latent_dim}")
        self.fc = nn.Linear(in_channels * image_size * image_size, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class AEDecoder(nn.Module):
    """ODDObjects AE decoder: one fully-connected layer from the latent to the image (eq. 2)."""

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int, output: Output = "sigmoid") -> None:
        super().__init__()
        dim = _check_vector("odd_ae decoder", in_shape)
        self.shape = (out_channels, image_size, image_size)
        self.fc = nn.Linear(dim, out_channels * image_size * image_size)
        self.output = output

    def forward(self, z: torch.Tensor):
        return _finish(self.fc(z).view(z.shape[0], *self.shape), self.output)


# ---------------------------------------------------------------------------------------------- CAE / CVAE

class CAEEncoder(nn.Module):
    """ODDObjects CAE encoder: four stride-2 convolutions + ReLU, then a dense 32-d latent.

    Conv2D(32,3,2), Conv2D(64,3,2), Conv2D(128,3,2), Conv2D(256,4,2), each + ReLU, then a dense
    layer to the latent (``2 * latent_dim`` outputs when ``variational``: mean and log-variance)."""

    def __init__(self, in_channels: int, image_size: int, channels: list[int] = (32, 64, 128, 256),
                 kernels: list[int] = (3, 3, 3, 4), latent_dim: int = 32, min_size: int = 2,
                 variational: bool = False) -> None:
        super().__init__()
        what = "odd_cvae encoder" if variational else "odd_cae encoder"
        _check_lists(what, channels, kernels)
        if latent_dim < 1:
            raise ValueError(f"{what}: latent_dim must be >= 1, got {latent_dim}")
        self.sizes = plan_stages(image_size, kernels, min_size, what)
        layers: list[nn.Module] = []
        prev = in_channels
        for width, k in zip(channels[:len(self.sizes) - 1], kernels):
            layers += [nn.Conv2d(prev, int(width), int(k), stride=2, padding=(int(k) - 1) // 2), nn.ReLU(inplace=True)]
            prev = int(width)
        self.features = nn.Sequential(*layers)
        self.latent_dim, self.variational = latent_dim, variational
        side = self.sizes[-1]
        self.fc = nn.Linear(prev * side * side, latent_dim * (2 if variational else 1))

    def forward(self, x: torch.Tensor):
        h = self.fc(self.features(x).flatten(1))
        if not self.variational:
            return h
        mu, logvar = h.chunk(2, dim=1)
        # reparameterisation while training; the posterior mean when scoring, so scores are deterministic
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        kl = gaussian_kl(mu, logvar)
        return {"features": z, "mu": mu, "logvar": logvar, "kl": kl.mean()}


def CVAEEncoder(in_channels: int, image_size: int, channels: list[int] = (32, 64, 128, 256),
                kernels: list[int] = (3, 3, 3, 4), latent_dim: int = 32, min_size: int = 2) -> CAEEncoder:
    """ODDObjects CVAE encoder: the CAE encoder whose last layer gives a 32-d mean and log-variance."""
    return CAEEncoder(in_channels, image_size, channels, kernels, latent_dim, min_size, variational=True)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mu, exp(logvar)) || N(0, I)), summed over the latent dimensions: ``(B,)``."""
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).sum(1)


class _DeconvStack(nn.Module):
    """Dense latent -> (start_channels, s, s) maps, then stride-2 transposed convolutions mirroring an encoder
    plan, then an optional stride-1 layer to the image channels."""

    def __init__(self, what: str, in_shape: Sequence[int], out_channels: int, image_size: int,
                 channels: Sequence[int], kernels: Sequence[int], start_channels: int | None, min_size: int,
                 batch_norm: bool, final_kernel: int | None, output: Output) -> None:
        super().__init__()
        _check_lists(what, channels, kernels)
        in_shape = tuple(in_shape)
        # the encoder read these kernels in the opposite order
        sizes = plan_stages(image_size, list(reversed(list(kernels))), min_size, what)
        n = len(sizes) - 1
        channels, kernels = [int(c) for c in channels[len(channels) - n:]], [int(k) for k in kernels[len(kernels) - n:]]
        if len(in_shape) == 1:
            start = int(start_channels or channels[0])
            side = sizes[-1]
            self.start: tuple[int, int, int] | None = (start, side, side)
            self.from_latent: nn.Module | None = nn.Linear(in_shape[0], start * side * side)
            self.latent_post = nn.Sequential(*([nn.BatchNorm2d(start)] if batch_norm else []), nn.ReLU(inplace=True))
            prev = start
        elif len(in_shape) == 3:
            if in_shape[1] != sizes[-1] or in_shape[2] != sizes[-1]:
                raise ValueError(f"{what}: feature maps of shape {in_shape} do not fit the {n}-stage plan for "
                                 f"{image_size}x{image_size} images (expected (C, {sizes[-1]}, {sizes[-1]}))")
            self.start, self.from_latent, self.latent_post = None, None, nn.Identity()
            prev = int(in_shape[0])
        else:
            raise ValueError(f"{what}: expects latent vectors (D,) or maps (C, h, w), got shape {in_shape}")
        layers: list[nn.Module] = []
        targets = list(reversed(sizes[:-1]))   # side after each transposed convolution
        cur = sizes[-1]
        last_stage_is_output = final_kernel is None
        # with no final stride-1 layer the last transposed convolution writes the image channels
        widths = channels[1:] + [out_channels] if last_stage_is_output else channels
        for i, (width, k, target) in enumerate(zip(widths, kernels, targets)):
            pad = (k - 1) // 2
            op = target - ((cur - 1) * 2 - 2 * pad + k)
            if op not in (0, 1):
                raise ValueError(f"{what}: cannot bring {cur} back to {target} with a stride-2 kernel-{k} "
                                 f"transposed convolution")
            layers.append(nn.ConvTranspose2d(prev, width, k, stride=2, padding=pad, output_padding=op))
            if not (last_stage_is_output and i == n - 1):
                layers += [nn.BatchNorm2d(width)] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
            prev, cur = width, target
        if final_kernel is not None:
            layers.append(nn.ConvTranspose2d(prev, out_channels, final_kernel, stride=1, padding=(final_kernel - 1) // 2))
        self.body = nn.Sequential(*layers)
        self.output = output

    def forward(self, z: torch.Tensor):
        if self.from_latent is not None:
            z = self.latent_post(self.from_latent(z).view(z.shape[0], *self.start))
        return _finish(self.body(z), self.output)


class CAEDecoder(_DeconvStack):
    """ODDObjects CAE / CVAE decoder: dense latent -> maps -> four stride-2 deconvolutions -> image.

    Dense 32-d -> (32, s, s) maps + ReLU, Deconv2D(256,4,2), Deconv2D(128,3,2), Deconv2D(64,3,2),
    Deconv2D(32,3,2), each + ReLU, then Deconv2D(C,3,1) and a sigmoid."""

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int,
                 channels: list[int] = (256, 128, 64, 32), kernels: list[int] = (4, 3, 3, 3),
                 start_channels: int = 32, final_kernel: int = 3, min_size: int = 2, output: Output = "sigmoid") -> None:
        if final_kernel < 1 or final_kernel % 2 == 0:
            raise ValueError(f"odd_cae decoder: final_kernel must be odd (a stride-1 'same' layer), got {final_kernel}")
        super().__init__("odd_cae decoder", in_shape, out_channels, image_size, channels, kernels, start_channels,
                         min_size, batch_norm=False, final_kernel=final_kernel, output=output)


# ---------------------------------------------------------------------------------------------- MemCAE

class MemCAEEncoder(nn.Module):
    """ODDObjects MemCAE encoder: three stride-2 convolutions + BN + ReLU, then a dense 32-d latent.

    Conv2D(16,1,2), Conv2D(32,3,2), Conv2D(64,3,2) with BN + ReLU, then a dense layer to the
    32-d latent the memory reads. ``latent_dim: null`` keeps the 64-channel maps instead (every position is a
    memory query, as in the authors' code); the last convolution then has no BN / ReLU."""

    def __init__(self, in_channels: int, image_size: int, channels: list[int] = (16, 32, 64),
                 kernels: list[int] = (1, 3, 3), latent_dim: int | None = 32, min_size: int = 2) -> None:
        super().__init__()
        what = "odd_memcae encoder"
        _check_lists(what, channels, kernels)
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"{what}: latent_dim must be >= 1 or null, got {latent_dim}")
        self.sizes = plan_stages(image_size, kernels, min_size, what)
        n = len(self.sizes) - 1
        layers: list[nn.Module] = []
        prev = in_channels
        for i, (width, k) in enumerate(zip(channels[:n], kernels)):
            layers.append(nn.Conv2d(prev, int(width), int(k), stride=2, padding=(int(k) - 1) // 2))
            if latent_dim is not None or i < n - 1:
                layers += [nn.BatchNorm2d(int(width)), nn.ReLU(inplace=True)]
            prev = int(width)
        self.features = nn.Sequential(*layers)
        side = self.sizes[-1]
        self.fc = nn.Linear(prev * side * side, latent_dim) if latent_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.fc(h.flatten(1)) if self.fc is not None else h


class MemCAEDecoder(_DeconvStack):
    """ODDObjects MemCAE decoder: dense latent -> maps -> three stride-2 deconvolutions (BN + ReLU) -> image.

    Mirrors the encoder: dense latent -> (64, s, s) maps (BN + ReLU), Deconv2D(64->32,3,2),
    Deconv2D(32->16,3,2) with BN + ReLU, Deconv2D(16->C,k,2) and a sigmoid.

    The paper writes the last one Deconv2D(16,1,2); a 1x1 stride-2 transposed convolution leaves three of every
    four pixels at its bias, so the default ``kernels`` use 3 there, as the authors' code does.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, image_size: int,
                 channels: list[int] = (64, 32, 16), kernels: list[int] = (3, 3, 3), min_size: int = 2,
                 output: Output = "sigmoid") -> None:
        super().__init__("odd_memcae decoder", in_shape, out_channels, image_size, channels, kernels,
                         start_channels=None, min_size=min_size, batch_norm=True, final_kernel=None, output=output)
