"""``reconad.ops.topk_mask``: OLED's threshold unit (paper 001, §3.4.2), a mask hiding each map's largest values.

For an activation ``A`` of shape (B, H, W) or (B, 1, H, W), ``N = H * W`` and ``keep = t``::

    k   = max(1, floor((1 - keep) * N + 0.5))      pixels to hide (round half up, float64)
    s_b = the k-th largest value of map b            (NaN ranks above +inf, as in torch.sort)
    M   = relu(s - A) / (relu(s - A) + eps)          eq. 2: 0 at and above s, ~1 below

Rules (docs/ops/topk_mask.md explains them):

* ties: every pixel equal to ``s`` is hidden, so ``#{A >= s} >= k`` pixels are 0; exactly ``k`` when the
  k-th and (k+1)-th largest values differ. A constant map is hidden entirely.
* ``-0.0`` and ``+0.0`` are equal; ``s`` is returned as ``+0.0`` then.
* NaN propagates: a NaN pixel's mask is NaN; a map with at least ``k`` NaNs has ``s = NaN`` and an all-NaN
  mask. Infinities are ranked like numbers and eq. 2 is then evaluated in IEEE arithmetic as written.
* float16 / bfloat16 maps are computed in float32 and rounded once at the end.

Gradients (``grad=``):

* ``"exact"``: the derivative of eq. 2 with ``s`` differentiated too. For ``A_i < s``, with ``d = s - A_i``,
  ``dM_i/dA_i = -eps / (d + eps)^2``; ``dM_i/ds = +eps / (d + eps)^2`` is routed to the pixels equal to ``s``
  (shared equally among ties). Computed as ``(eps / (d + eps)) / (d + eps)``, which neither overflows nor
  underflows where the true value is representable. It is ~0 for any small eps: fine to check, useless to learn.
* ``"ste"`` (default): a straight-through estimator. Backward uses the Jacobian of the surrogate
  ``M~(A) = -(A - mean_map(A))``, i.e. ``dL/dA = -(g - mean_map(g))`` for ``g = dL/dM``: every pixel is told
  whether hiding it (raising A) or showing it (lowering A) changes the loss, with the sign of eq. 2 and, like
  the exact gradient, no component along the all-ones direction that the mask is invariant to.
"""
from __future__ import annotations

import math

import torch

from ._extension import define_op

__all__ = ["TOPK_MASK_EPS", "hidden_count", "topk_mask", "topk_mask_reference"]

#: eq. 2's "infinitesimal" eps; the paper gives no value, 1e-7 is tf.keras.backend.epsilon() (OLED is TensorFlow).
#: Pixels with ``s - A < 100 * eps`` get a mask value below 0.99.
TOPK_MASK_EPS = 1e-7

_GRAD_MODES = ("ste", "exact")


def hidden_count(keep: float, n: int) -> int:
    """``k = max(1, floor((1 - keep) * n + 0.5))``: how many of a map's ``n`` pixels are hidden."""
    return max(1, min(n, int(math.floor((1.0 - float(keep)) * n + 0.5))))


def _check(activation: torch.Tensor, keep: float, eps: float, grad: str) -> None:
    if not isinstance(activation, torch.Tensor):
        raise TypeError(f"topk_mask: activation must be a tensor, got {type(activation).__name__}")
    shape = tuple(activation.shape)
    if not (activation.dim() == 3 or (activation.dim() == 4 and shape[1] == 1)):
        raise ValueError(f"topk_mask: activation must be (B, H, W) or (B, 1, H, W), got shape {shape}")
    if shape[-1] * shape[-2] == 0:
        raise ValueError(f"topk_mask: maps must have at least one pixel, got shape {shape}")
    if not activation.is_floating_point():
        raise TypeError(f"topk_mask: activation must be a floating-point tensor, got {activation.dtype}")
    if not 0.0 <= float(keep) <= 1.0:
        raise ValueError(f"topk_mask: keep must be in [0, 1] (fraction of pixels kept), got {keep}")
    if not (math.isfinite(float(eps)) and float(eps) > 0.0):
        raise ValueError(f"topk_mask: eps must be finite and > 0, got {eps}")
    if grad not in _GRAD_MODES:
        raise ValueError(f"topk_mask: grad must be one of {_GRAD_MODES}, got {grad!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------------------
# Pure-PyTorch implementation: the fallback, and the reference the kernels are tested against.
# Both functions take maps flattened to (..., H, W) and treat the last two dims as one map.
# ---------------------------------------------------------------------------------------------------------

def _forward_reference(activation: torch.Tensor, k: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, threshold): eq. 2 with s = kthvalue; ``threshold`` has shape ``activation.shape[:-2]``."""
    n = activation.shape[-1] * activation.shape[-2]
    a = activation.reshape(-1, n).to(_compute_dtype(activation.dtype))
    # k-th largest = (n - k + 1)-th smallest; kthvalue ranks NaN above +inf; "+ 0" turns -0.0 into +0.0
    s = a.kthvalue(n - k + 1, dim=1, keepdim=True).values + 0.0
    d = torch.relu(s - a)
    mask = d / (d + eps)
    return (mask.to(activation.dtype).reshape(activation.shape),
            s.reshape(activation.shape[:-2]).to(activation.dtype))


def _backward_reference(grad: torch.Tensor, activation: torch.Tensor, threshold: torch.Tensor, eps: float,
                        grad_mode: str) -> torch.Tensor:
    n = activation.shape[-1] * activation.shape[-2]
    ct = _compute_dtype(activation.dtype)
    g = grad.reshape(-1, n).to(ct)
    # per-map sums in float64 whatever the dtype (as the kernels do): T below can be a small difference
    # of many terms
    if grad_mode == "ste":
        out = g.mean(dim=1, keepdim=True, dtype=torch.float64).to(ct) - g
    else:
        a = activation.reshape(-1, n).to(ct)
        s = threshold.reshape(-1, 1).to(ct)
        below = a < s
        den = torch.where(below, s - a, 0.0) + eps
        gw = torch.where(below, g * ((eps / den) / den), 0.0)
        at_s = a == s
        share = (gw.sum(dim=1, keepdim=True, dtype=torch.float64)
                 / at_s.sum(dim=1, keepdim=True).clamp_min(1)).to(ct)
        out = torch.where(at_s, share, -gw)
        out = torch.where(a.isnan() | s.isnan(), float("nan"), out)
    return out.to(activation.dtype).reshape(activation.shape)


class _ReferenceFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, activation: torch.Tensor, k: int, eps: float, grad_mode: str) -> torch.Tensor:
        mask, threshold = _forward_reference(activation, k, eps)
        ctx.save_for_backward(activation, threshold)
        ctx.eps, ctx.grad_mode = eps, grad_mode
        return mask

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor):
        activation, threshold = ctx.saved_tensors
        return _backward_reference(grad_mask, activation, threshold, ctx.eps, ctx.grad_mode), None, None, None


def topk_mask_reference(activation: torch.Tensor, keep: float = 0.875, eps: float = TOPK_MASK_EPS,
                        grad: str = "ste") -> torch.Tensor:
    """Pure-PyTorch ``topk_mask`` (kthvalue + eq. 2, both gradient modes): the fallback and the reference."""
    _check(activation, keep, eps, grad)
    k = hidden_count(keep, activation.shape[-1] * activation.shape[-2])
    return _ReferenceFunction.apply(activation, k, float(eps), grad)


# ---------------------------------------------------------------------------------------------------------
# The compiled op reconad::topk_mask(activation, k, eps, grad) -> (mask, threshold) and its backward.
# ---------------------------------------------------------------------------------------------------------

def _fake(activation, k, eps, grad):  # noqa: ANN001 - fake-tensor signature
    torch._check(activation.dim() >= 2, lambda: f"topk_mask: need (..., H, W), got {tuple(activation.shape)}")
    return torch.empty_like(activation, memory_format=torch.contiguous_format), \
        activation.new_empty(activation.shape[:-2])


def _fake_backward(grad, activation, threshold, eps, grad_mode):  # noqa: ANN001
    return torch.empty_like(activation, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    activation, _k, eps, grad_mode = inputs
    ctx.save_for_backward(activation, output[1])
    ctx.eps, ctx.grad_mode = eps, grad_mode
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_mask, _grad_threshold):  # noqa: ANN001
    activation, threshold = ctx.saved_tensors
    g = torch.ops.reconad.topk_mask_backward(grad_mask, activation, threshold, ctx.eps, ctx.grad_mode)
    return g, None, None, None


def _kernel(activation: torch.Tensor, k: int, eps: float, grad: str) -> torch.Tensor:
    return torch.ops.reconad.topk_mask(activation, k, eps, grad)[0]


_OP = define_op("topk_mask", fallback=_ReferenceFunction.apply, kernel=_kernel, fake=_fake, backward=_backward,
                setup_context=_setup_context, fakes={"topk_mask_backward": _fake_backward})


def topk_mask(activation: torch.Tensor, keep: float = 0.875, eps: float = TOPK_MASK_EPS,
              grad: str = "ste") -> torch.Tensor:
    """OLED's threshold unit: hide the ``1 - keep`` fraction of each map's largest activations (eq. 2).

    ``activation``: (B, H, W) or (B, 1, H, W), any float dtype, any strides. Returns the mask, same shape and
    dtype: 0 at and above each map's k-th largest value s, ``d / (d + eps)`` (~1) below, ``d = s - A``.
    ``grad="ste"`` (default) back-propagates the straight-through ``-(g - mean_map(g))`` so that a learned
    activation (OLED's Mask Module) gets a useful signal; ``grad="exact"`` the derivative of eq. 2.
    See the module docstring for ties, constant maps and NaN.
    """
    _check(activation, keep, eps, grad)
    k = hidden_count(keep, activation.shape[-1] * activation.shape[-2])
    return _OP(activation, k, float(eps), grad)
