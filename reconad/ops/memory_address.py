"""``reconad.ops.memory_address``: MemAE memory addressing with hard shrinkage.

Given queries ``z`` (N x C), a memory ``M`` (K x C) and a shrink threshold ``lambda``::

    s = sim(z_n, m_k)                         cosine (default) or dot product
    w = softmax_k(s)
    w' = relu(w - lambda) * w / (|w - lambda| + eps)      MemAE's hard shrinkage
    w_hat = w' / max(sum_k w', eps);  z_hat = w_hat M;  entropy = mean_n sum_k -w_hat log w_hat

As eps -> 0 this is a softmax restricted to the support ``S_n = {k : s_nk > logsumexp_k(s_n) + ln lambda}``
(``w_nk > lambda``). The op is defined as that limit: the support is not differentiated, a row whose support
is empty reads zeros and has zero entropy. The eps-regularised formula agrees in the forward pass, but its
gradient spikes wherever some w lies within eps of lambda; the limit's gradient is the restricted softmax's.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._extension import define_op

__all__ = ["MemoryAddressOutput", "memory_address", "memory_address_reference"]

_SIMILARITIES = ("cosine", "dot")


class MemoryAddressOutput(NamedTuple):
    output: torch.Tensor              # (N, C): z_hat = w_hat M
    entropy: torch.Tensor             # scalar: mean over rows of the entropy of w_hat (MemAE's loss)
    weights: torch.Tensor | None      # (N, K) w_hat when return_weights=True, else None
    row_entropy: torch.Tensor         # (N,): each row's entropy of w_hat (``entropy`` is its mean)


def _check(z: torch.Tensor, memory: torch.Tensor, shrink_threshold: float, similarity: str) -> None:
    if z.dim() != 2:
        raise ValueError(f"memory_address: z must be (N, C), got shape {tuple(z.shape)}")
    if memory.dim() != 2 or memory.shape[1] != z.shape[1]:
        raise ValueError(f"memory_address: memory must be (K, C) with C = {z.shape[1]} (from z), "
                         f"got shape {tuple(memory.shape)}")
    if memory.shape[0] < 1:
        raise ValueError("memory_address: memory needs at least one slot (K >= 1)")
    if similarity not in _SIMILARITIES:
        raise ValueError(f"memory_address: similarity must be one of {_SIMILARITIES}, got {similarity!r}")
    if not 0.0 <= float(shrink_threshold) < 1.0:
        raise ValueError(f"memory_address: shrink_threshold must be in [0, 1), got {shrink_threshold}")
    if z.device != memory.device or z.dtype != memory.dtype:
        raise ValueError(f"memory_address: z and memory must share device and dtype, got "
                         f"{z.device}/{z.dtype} and {memory.device}/{memory.dtype}")


def _similarity(z: torch.Tensor, memory: torch.Tensor, similarity: str) -> torch.Tensor:
    if similarity == "cosine":
        return F.normalize(z, dim=1, eps=1e-12) @ F.normalize(memory, dim=1, eps=1e-12).t()
    return z @ memory.t()


def memory_address_reference(z: torch.Tensor, memory: torch.Tensor, shrink_threshold: float,
                             similarity: str = "cosine", return_weights: bool = False) -> MemoryAddressOutput:
    """Pure-PyTorch implementation of the op (the fallback, and the reference its kernels are tested against)."""
    _check(z, memory, shrink_threshold, similarity)
    s = _similarity(z, memory, similarity)                       # (N, K)
    if shrink_threshold > 0:
        with torch.no_grad():
            cut = torch.logsumexp(s, dim=1, keepdim=True) + math.log(shrink_threshold)
            support = s > cut
            empty = ~support.any(dim=1, keepdim=True)
            # empty rows get a harmless all-finite row; their weights are zeroed below
            keep = support | empty
        s_in = s.masked_fill(~keep, float("-inf"))
        w = torch.softmax(s_in, dim=1).masked_fill(empty, 0.0)
        lse_s = torch.logsumexp(s_in, dim=1).masked_fill(empty.squeeze(1), 0.0)
        s_sup = s.masked_fill(~support, 0.0)
    else:
        w = torch.softmax(s, dim=1)
        lse_s = torch.logsumexp(s, dim=1)
        s_sup = s
    out = w @ memory
    row_entropy = lse_s - (w * s_sup).sum(dim=1)
    entropy = z.new_zeros(()) if z.shape[0] == 0 else row_entropy.mean()
    return MemoryAddressOutput(out, entropy, w if return_weights else None, row_entropy)


# ---------------------------------------------------------------------------------------------------------
# The compiled op reconad::memory_address(z, keys, values, shrink_threshold) -> (output, entropy per row,
# lse, lse over the support) and its backward: fake and autograd implementations.
# ---------------------------------------------------------------------------------------------------------

def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake(z, keys, values, shrink_threshold):  # noqa: ANN001 - fake-tensor signature
    torch._check(z.dim() == 2 and keys.dim() == 2 and keys.shape == values.shape and keys.shape[1] == z.shape[1],
                 lambda: f"memory_address: bad shapes z {tuple(z.shape)}, keys {tuple(keys.shape)}, "
                         f"values {tuple(values.shape)}")
    n = z.shape[0]
    sd = _stats_dtype(z.dtype)
    return (z.new_empty((n, z.shape[1])), z.new_empty((n,), dtype=sd), z.new_empty((n,), dtype=sd),
            z.new_empty((n,), dtype=sd))


def _fake_backward(grad_output, grad_entropy, z, keys, values, output, entropy, lse, lse_support,  # noqa: ANN001
                   shrink_threshold):
    return z.new_empty(z.shape), keys.new_empty(keys.shape), values.new_empty(values.shape)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    z, keys, values, shrink_threshold = inputs
    out, row_entropy, lse, lse_support = output
    ctx.save_for_backward(z, keys, values, out, row_entropy, lse, lse_support)
    ctx.shrink_threshold = shrink_threshold


def _backward(ctx, grad_out, grad_entropy, _grad_lse, _grad_lse_support):  # noqa: ANN001
    z, keys, values, out, row_entropy, lse, lse_support = ctx.saved_tensors
    # lse and lse_support are saved statistics, not differentiable outputs
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    if grad_entropy is None:
        grad_entropy = torch.zeros_like(row_entropy)
    dz, dkeys, dvalues = torch.ops.reconad.memory_address_backward(
        grad_out, grad_entropy, z, keys, values, out, row_entropy, lse, lse_support, ctx.shrink_threshold)
    return dz, dkeys, dvalues, None


def _kernel(z: torch.Tensor, memory: torch.Tensor, shrink_threshold: float, similarity: str) -> MemoryAddressOutput:
    _check(z, memory, shrink_threshold, similarity)
    if similarity == "cosine":
        # normalised here so that the normalisation's gradient is PyTorch's; the read uses the raw memory
        queries, keys = F.normalize(z, dim=1, eps=1e-12), F.normalize(memory, dim=1, eps=1e-12)
    else:
        queries, keys = z, memory
    out, row_entropy, _, _ = torch.ops.reconad.memory_address(queries, keys, memory, float(shrink_threshold))
    # mean over rows, 0 for N = 0 (as the reference)
    entropy = (row_entropy.sum() / max(z.shape[0], 1)).to(z.dtype)
    return MemoryAddressOutput(out, entropy, None, row_entropy.to(z.dtype))


def _fallback(z: torch.Tensor, memory: torch.Tensor, shrink_threshold: float, similarity: str) -> MemoryAddressOutput:
    return memory_address_reference(z, memory, shrink_threshold, similarity)


_OP = define_op("memory_address", fallback=_fallback, kernel=_kernel, fake=_fake, backward=_backward,
                setup_context=_setup_context, fakes={"memory_address_backward": _fake_backward})


def memory_address(z: torch.Tensor, memory: torch.Tensor, shrink_threshold: float,
                   similarity: str = "cosine", return_weights: bool = False) -> MemoryAddressOutput:
    """Read ``memory`` (K x C) with queries ``z`` (N x C); see the module docstring for the definition.

    Returns ``MemoryAddressOutput(output, entropy, weights, row_entropy)``: ``entropy`` (scalar, MemAE's
    loss) is the mean of ``row_entropy`` (N,), which evaluation uses per sample; ``weights`` is None unless
    asked for. Gradients flow to ``z`` and ``memory``. Runs the compiled op (``reconad::memory_address``)
    when ``backend("memory_address", device)`` is not ``"fallback"``; ``return_weights=True`` needs the
    N x K weights, which the op never forms, so it runs the reference.
    """
    if return_weights:
        return memory_address_reference(z, memory, shrink_threshold, similarity, return_weights=True)
    return _OP(z, memory, shrink_threshold, similarity)


