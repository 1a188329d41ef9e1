"""MMAE (paper 002): K encoders, one per resolution scale, one memory per scale, a multi-scale attention
fuser and a pixel-shuffle decoder. Plain ``nn.Module`` s, no training glue.

The modules are written once for 2-D images (``dims=2``: features ``(B, C, h, w)``) and 3-D video cubes
(``dims=3``: ``(B, C, t, h, w)``); the registered image components use ``dims=2``, ``reconad_mmae.video``
uses ``dims=3``. Features may also be vectors ``(B, D)`` (``latent_dim`` set: the paper's 1024-d latent).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reconad.builtin.conv import halvings
from reconad.builtin.memae import MemAEMemory
from reconad.components import MemoryRead

__all__ = ["MMAEDecoder", "MMAEEncoder", "MultiScaleDecoder", "MultiScaleEncoder", "MultiScaleMemory",
           "ScaleAttentionFuser", "pixel_shuffle_nd", "scale_resolutions"]

_NEG_SLOPE = 0.2  # LeakyReLU slope (paper §4.1)


def _act() -> nn.Module:
    return nn.LeakyReLU(_NEG_SLOPE, inplace=True)


def _conv(dims: int) -> type[nn.Module]:
    if dims not in (2, 3):
        raise ValueError(f"mmae: dims must be 2 (images) or 3 (video cubes), got {dims}")
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _width(j: int, base: int, cap: int) -> int:
    return min(base * 2 ** j, cap)


def scale_resolutions(image_size: int, scales: int, gamma: float) -> list[int]:
    """r_i = round(image_size * gamma^(i-1)), i = 1..K (paper §3.2): 256, 128, 64, 32, 16 for K=5, gamma=0.5."""
    if isinstance(scales, bool) or not isinstance(scales, int) or scales < 1:
        raise ValueError(f"mmae: scales (K) must be an int >= 1, got {scales!r}")
    if not 0.0 < float(gamma) < 1.0 and not (scales == 1 and gamma == 1.0):
        raise ValueError(f"mmae: gamma must be in (0, 1), got {gamma!r}")
    sizes = [int(round(image_size * float(gamma) ** i)) for i in range(scales)]
    if sizes[-1] < 1:
        raise ValueError(f"mmae: scale {scales} of a {image_size}-pixel input with gamma={gamma} has resolution "
                         f"{image_size * gamma ** (scales - 1):.2f} < 1; use fewer scales or a larger gamma")
    return sizes


def _halvings_to(size: int, target: int, what: str) -> int:
    """How many stride-2 convolutions (kernel 3, padding 1) bring ``size`` to ``target`` exactly."""
    sizes = halvings(size, 32)
    if target not in sizes:
        raise ValueError(f"mmae: {what}: stride-2 convolutions take {size} through {sorted(set(sizes), reverse=True)}"
                         f", never to feature_size={target}; choose a feature_size in that list")
    return sizes.index(target)


def pixel_shuffle_nd(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Depth-to-space over any number of trailing dims: ``(B, C * prod(f), *S) -> (B, C, *(S * f))``.

    For 2-D with equal factors this is ``F.pixel_shuffle`` (same channel order)."""
    factors = [int(f) for f in factors]
    b, c, *s = x.shape
    d = len(s)
    if len(factors) != d:
        raise ValueError(f"pixel_shuffle_nd: {d} spatial dims but {len(factors)} factors {factors}")
    if d == 2 and factors[0] == factors[1]:
        return F.pixel_shuffle(x, factors[0])
    p = math.prod(factors)
    if c % p:
        raise ValueError(f"pixel_shuffle_nd: channels {c} not divisible by prod(factors)={p}")
    x = x.reshape(b, c // p, *factors, *s)
    perm = [0, 1] + [i for k in range(d) for i in (2 + d + k, 2 + k)]
    return x.permute(perm).reshape(b, c // p, *[n * f for n, f in zip(s, factors)])


# ---------------------------------------------------------------------------------------------- encoders

class _Pipeline(nn.Module):
    """One scale's encoder f_ei: a stem, ``blocks`` strided 3x3 convolutions (LeakyReLU 0.2), a projection to
    the latent channels, and optionally a linear layer to a ``latent_dim`` vector."""

    def __init__(self, dims: int, in_channels: int, spatial: int, temporal: int, channels: int, base_width: int,
                 max_width: int, latent_dim: int | None, flat_size: int) -> None:
        super().__init__()
        conv = _conv(dims)
        layers: list[nn.Module] = [conv(in_channels, base_width, 3, padding=1), _act()]
        prev = base_width
        for j in range(max(spatial, temporal)):
            width = _width(j + 1, base_width, max_width)
            s = 2 if j < spatial else 1
            stride = s if dims == 2 else (2 if j < temporal else 1, s, s)
            layers += [conv(prev, width, 3, stride=stride, padding=1), _act()]
            prev = width
        layers.append(conv(prev, channels, 3, padding=1))  # linear projection: queries may take any sign
        self.body = nn.Sequential(*layers)
        self.to_latent = nn.Linear(channels * flat_size, latent_dim) if latent_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.to_latent(h.flatten(1)) if self.to_latent is not None else h


class MultiScaleEncoder(nn.Module):
    """MMAE encoding module: K encoders, the i-th reads the input resized to r_i = image_size * gamma^(i-1).

    Returns a LIST of K features, one per scale, all of the same shape: ``(B, channels, s, s)`` maps with
    s = ``feature_size`` (default: the smallest scale's resolution r_K), or ``(B, latent_dim)`` vectors when
    ``latent_dim`` is set (the paper's 1024). Every encoder halves its resolution with strided 3x3
    convolutions until s; widths double from ``base_width`` up to ``max_width``.
    """

    def __init__(self, in_channels: int, image_size: int, scales: int = 5, gamma: float = 0.5,
                 feature_size: int | None = None, channels: int = 64, base_width: int = 32, max_width: int = 128,
                 latent_dim: int | None = None, *, dims: int = 2, frames: int = 16, feature_frames: int = 2) -> None:
        super().__init__()
        self.resolutions = scale_resolutions(image_size, scales, gamma)
        fs = self.resolutions[-1] if feature_size is None else int(feature_size)
        if fs < 1 or fs > self.resolutions[-1]:
            raise ValueError(f"mmae encoder: feature_size must be in [1, {self.resolutions[-1]}] (the smallest "
                             f"scale's resolution, r_K for K={scales}, gamma={gamma}), got {feature_size}")
        temporal = _halvings_to(frames, feature_frames, f"frames={frames}") if dims == 3 else 0
        flat = fs * fs * (feature_frames if dims == 3 else 1)
        self.feature_size, self.dims, self.frames = fs, dims, frames
        self.pipelines = nn.ModuleList(
            _Pipeline(dims, in_channels, _halvings_to(r, fs, f"scale resolution {r}"), temporal, channels,
                      base_width, max_width, latent_dim, flat)
            for r in self.resolutions)

    def resize(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """x_{r_i}: the input resized to ``size`` (antialiased bilinear; video: every frame, time kept)."""
        if x.shape[-1] == size and x.shape[-2] == size:
            return x
        if self.dims == 2:
            return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return frames.view(b, t, c, size, size).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [enc(self.resize(x, r)) for enc, r in zip(self.pipelines, self.resolutions)]


class MMAEEncoder(MultiScaleEncoder):
    """MMAE encoders: K strided-convolution encoders, one per resolution image_size * gamma^(i-1); a list of K
    features. See ``MultiScaleEncoder`` (this is its 2-D image form, registered as encoder ``mmae``)."""

    def __init__(self, in_channels: int, image_size: int, scales: int = 5, gamma: float = 0.5,
                 feature_size: int | None = None, channels: int = 64, base_width: int = 32, max_width: int = 128,
                 latent_dim: int | None = None) -> None:
        super().__init__(in_channels, image_size, scales, gamma, feature_size, channels, base_width, max_width,
                         latent_dim, dims=2)


# ---------------------------------------------------------------------------------------------- memories

def _as_shapes(in_shape: object, what: str) -> tuple[list[tuple[int, ...]], bool]:
    """(list of per-scale shapes, whether the features are a single tensor rather than a list)."""
    if isinstance(in_shape, (list, tuple)) and in_shape and all(isinstance(s, int) for s in in_shape):
        return [tuple(in_shape)], True
    if isinstance(in_shape, (list, tuple)) and in_shape and all(isinstance(s, (list, tuple)) for s in in_shape):
        return [tuple(s) for s in in_shape], False
    raise ValueError(f"{what}: in_shape must be a feature shape (C, ...) or a list of them (one per scale), "
                     f"got {in_shape!r}")


class MultiScaleMemory(nn.Module):
    """MMAE's multi-scale memories (paper eqs. 4-9): one MemAE memory (the core's ``memae``,
    ``reconad.builtin.memae.MemAEMemory``) per scale, ``slots`` each (60 in the paper).

    Takes a list of K features ``[(B, C_i, *S_i)]`` (or ``(B, C_i)`` vectors; shapes may differ per scale);
    every position of a map is a query of size C_i. Returns ``MemoryRead(output=[K de-anomalised features,
    same shapes], entropy=mean over scales, sample_entropy=(B,) mean over scales when not training, else
    None)``. A single tensor is read as K=1 and returned as a tensor. ``slots`` is one count for every scale
    or a list of K counts.
    """

    def __init__(self, in_shape: list, slots: int | list[int] = 60, shrink_threshold: float | None = None,
                 similarity: Literal["cosine", "dot"] = "cosine") -> None:
        super().__init__()
        shapes, self.single = _as_shapes(in_shape, "mmae_multiscale memory")
        counts = list(slots) if isinstance(slots, (list, tuple)) else [slots] * len(shapes)
        if len(counts) != len(shapes):
            raise ValueError(f"mmae_multiscale memory: slots lists {len(counts)} counts {counts} for "
                             f"{len(shapes)} scales")
        self.shapes = shapes
        # MemAEMemory reads vectors or (C, h, w) maps: any other map (video's (C, t, h, w)) is read as
        # (C, positions, 1), the same queries in the same order
        self.memories = nn.ModuleList(
            MemAEMemory(s if len(s) == 1 else (s[0], math.prod(s[1:]), 1), n, shrink_threshold, similarity)
            for s, n in zip(shapes, counts))

    def _read(self, memory: MemAEMemory, f: torch.Tensor) -> MemoryRead:
        c = memory.memory.shape[1]
        if f.dim() < 2 or f.shape[1] != c:
            raise ValueError(f"mmae_multiscale memory: features of shape {tuple(f.shape)} for a memory of "
                             f"{c}-channel slots; expected (B, {c}, ...)")
        if f.dim() == 2:
            return memory(f)
        read = memory(f.reshape(f.shape[0], c, -1, 1))
        return read._replace(output=read.output.reshape(f.shape))

    def forward(self, features: torch.Tensor | list[torch.Tensor]) -> MemoryRead:
        feats = [features] if self.single and isinstance(features, torch.Tensor) else list(features)
        if len(feats) != len(self.memories):
            raise ValueError(f"mmae_multiscale memory: built for {len(self.memories)} scales, got {len(feats)} "
                             f"features")
        reads = [self._read(mem, f) for mem, f in zip(self.memories, feats)]
        outs = [r.output for r in reads]
        entropy = torch.stack([r.entropy for r in reads]).mean()
        per = [r.sample_entropy for r in reads]
        sample = torch.stack(per).mean(0) if all(p is not None for p in per) else None
        return MemoryRead(outs[0] if self.single else outs, entropy, sample)


# ---------------------------------------------------------------------------------------------- fuser

class ScaleAttentionFuser(nn.Module):
    """Multi-scale attention fuser: F = sum_i a_i * F_i with per-position weights a = softmax_i(g([F_1..F_K])).

    ``g`` is a two-layer 1x1 convolution over the K de-anomalised features concatenated (so it sees every
    scale at that position); its last layer starts at zero, so training starts from plain averaging.
    ``mode="mean"`` fixes a_i = 1/K (the ablation). ``forward`` returns (fused, weights ``(B, K, *S)``).
    """

    def __init__(self, scales: int, channels: int, mode: Literal["attention", "mean"] = "attention",
                 hidden: int | None = None) -> None:
        super().__init__()
        if mode not in ("attention", "mean"):
            raise ValueError(f"mmae fuser must be 'attention' or 'mean', got {mode!r}")
        self.scales, self.mode = scales, mode
        self.score = None
        if mode == "attention" and scales > 1:
            hidden = hidden or max(16, channels // 2)
            self.score = nn.Sequential(nn.Conv1d(scales * channels, hidden, 1), _act(), nn.Conv1d(hidden, scales, 1))
            nn.init.zeros_(self.score[-1].weight)
            nn.init.zeros_(self.score[-1].bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack(feats, 1)                                        # (B, K, C, *S)
        b, k, c = x.shape[:3]
        spatial = x.shape[3:]
        if self.score is None:
            weights = x.new_full((b, k, *spatial), 1.0 / k)
        else:
            logits = self.score(x.reshape(b, k * c, -1))                 # (B, K, positions)
            weights = torch.softmax(logits, 1).reshape(b, k, *spatial)
        return (weights.unsqueeze(2) * x).sum(1), weights


# ---------------------------------------------------------------------------------------------- decoder

class MultiScaleDecoder(nn.Module):
    """MMAE decoding module: fuse the K (de-anomalised) features with the attention fuser, then upsample with
    pixel shuffle (3x3 convolution to 4x the channels, 2x depth-to-space, LeakyReLU 0.2) to the image.

    Takes a list of K features of ONE shape ``(C, s, s)`` (or ``(D,)`` vectors: a linear layer first makes
    ``max_width`` maps of ``start_size``), or a single tensor (K=1). Returns ``{"recon": (B, C_out, H, W),
    "scale_weights": (B, K, s, s)}`` (the fuser's weights; ``(B, K)`` for vectors).
    """

    def __init__(self, in_shape: list, out_channels: int, image_size: int,
                 fuser: Literal["attention", "mean"] = "attention", fuser_hidden: int | None = None,
                 base_width: int = 32, max_width: int = 128, start_size: int = 4,
                 output: Literal["sigmoid", "none"] = "sigmoid", *, dims: int = 2, frames: int = 16,
                 start_frames: int = 2) -> None:
        super().__init__()
        shapes, self.single = _as_shapes(in_shape, "mmae decoder")
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"mmae decoder: the fuser needs every scale's features in one shape, got {shapes}")
        shape = shapes[0]
        conv = _conv(dims)
        self.dims = dims
        self.fuser = ScaleAttentionFuser(len(shapes), shape[0], fuser, fuser_hidden)
        if len(shape) == 1:
            size, t = start_size, start_frames
            self.start = (max_width, t, size, size) if dims == 3 else (max_width, size, size)
            self.from_latent = nn.Sequential(nn.Linear(shape[0], math.prod(self.start)), _act())
            prev = max_width
        elif len(shape) == dims + 1:
            size, t = shape[-1], (shape[1] if dims == 3 else 1)
            if shape[-2] != size:
                raise ValueError(f"mmae decoder: expects square feature maps, got {shape}")
            self.from_latent, prev = None, shape[0]
        else:
            raise ValueError(f"mmae decoder: expects features (C,{' t,' if dims == 3 else ''} s, s) or (D,), "
                             f"got {shape}")
        n = _halvings_to(image_size, size, f"image_size={image_size}")
        m = _halvings_to(frames, t, f"frames={frames}") if dims == 3 else 0
        sizes, times = halvings(image_size, n), halvings(frames, m)
        blocks: list[nn.Module] = []
        self.plan: list[tuple[tuple[int, ...], tuple[int, ...]]] = []   # (factors, target) per block
        for j in range(max(n, m)):
            up = j >= max(n, m) - n                    # spatial doublings come last: the finest sizes
            tup = j >= max(n, m) - m
            width = _width(max(n, m) - 1 - j, base_width, max_width)
            s_target = sizes[max(n, m) - 1 - j] if up else sizes[n]
            factors = (2 if tup else 1, 2 if up else 1, 2 if up else 1) if dims == 3 else (2, 2)
            blocks.append(conv(prev, width * math.prod(factors), 3, padding=1))
            target = (times[max(n, m) - 1 - j] if tup else times[m], s_target, s_target) if dims == 3 \
                else (s_target, s_target)
            self.plan.append((factors, target))
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(prev, out_channels, 3, padding=1)
        self.output = output

    def forward(self, features: torch.Tensor | list[torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = [features] if self.single and isinstance(features, torch.Tensor) else list(features)
        h, weights = self.fuser(feats)
        if self.from_latent is not None:
            h = self.from_latent(h).view(h.shape[0], *self.start)
        for conv, (factors, target) in zip(self.blocks, self.plan):
            h = F.leaky_relu(pixel_shuffle_nd(conv(h), factors), _NEG_SLOPE)
            if tuple(h.shape[2:]) != target:       # odd sizes: doubling overshoots by one; crop
                h = h[(..., *[slice(0, t) for t in target])]
        recon = self.head(h)
        if self.output == "sigmoid":
            recon = torch.sigmoid(recon)
        return {"recon": recon, "scale_weights": weights}


class MMAEDecoder(MultiScaleDecoder):
    """MMAE decoder: attention-fuses the K de-anomalised features, then pixel-shuffle upsampling to the image.
    See ``MultiScaleDecoder`` (this is its 2-D image form, registered as decoder ``mmae``)."""

    def __init__(self, in_shape: list, out_channels: int, image_size: int,
                 fuser: Literal["attention", "mean"] = "attention", fuser_hidden: int | None = None,
                 base_width: int = 32, max_width: int = 128, start_size: int = 4,
                 output: Literal["sigmoid", "none"] = "sigmoid") -> None:
        super().__init__(in_shape, out_channels, image_size, fuser, fuser_hidden, base_width, max_width,
                         start_size, output, dims=2)
