"""The MemAE memory (Gong et al. 2019): cosine addressing, hard shrinkage, entropy regulariser."""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

from ..components import MemoryRead
from ..ops import memory_address

__all__ = ["MemAEMemory"]


class MemAEMemory(nn.Module):
    """MemAE memory: every feature vector (or every position of a feature map) reads ``slots`` items.

    Takes ``(B, C)`` vectors or ``(B, C, h, w)`` maps (each of the h*w positions is a query of size C) and
    returns the same shape. ``shrink_threshold`` defaults to 1 / slots (MemAE uses values in [1/N, 3/N]).
    """

    def __init__(self, in_shape: Sequence[int], slots: int = 100, shrink_threshold: float | None = None,
                 similarity: Literal["cosine", "dot"] = "cosine") -> None:
        super().__init__()
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 3):
            raise ValueError(f"memae memory: expects features (C,) or (C, h, w), got shape {in_shape}")
        if slots < 1:
            raise ValueError(f"memae memory: slots must be >= 1, got {slots}")
        dim = in_shape[0]
        self.shrink_threshold = 1.0 / slots if shrink_threshold is None else float(shrink_threshold)
        self.similarity = similarity
        bound = 1.0 / math.sqrt(dim)
        self.memory = nn.Parameter(torch.empty(slots, dim).uniform_(-bound, bound))

    def forward(self, features: torch.Tensor) -> MemoryRead:
        if features.dim() == 4:
            b, c, h, w = features.shape
            queries = features.permute(0, 2, 3, 1).reshape(-1, c)
        else:
            b, c = features.shape
            h = w = 1
            queries = features
        # the fused op at training, evaluation and prediction alike: it returns each query's entropy, so
        # evaluation needs no (N, K) weights
        read = memory_address(queries, self.memory.to(queries.dtype), self.shrink_threshold,
                              similarity=self.similarity)
        out = read.output
        out = out.view(b, h, w, c).permute(0, 3, 1, 2) if features.dim() == 4 else out
        # per sample: the mean entropy over its h * w positions (evaluation only, as before)
        sample_entropy = None if self.training else read.row_entropy.view(b, h * w).mean(1)
        return MemoryRead(out.contiguous(), read.entropy, sample_entropy)
