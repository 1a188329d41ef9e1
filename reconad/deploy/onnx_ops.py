"""ONNX decompositions of reconad's custom ops, for ``torch.onnx.export(dynamo=True, custom_translation_table=...)``.

``reconad::memory_address(queries, keys, values, lambda)`` is written with standard ONNX ops, faithful to the
op's definition (reconad/ops/memory_address.py): a softmax restricted to the support
``s > logsumexp(s) + ln(lambda)``; a row whose support is empty reads zeros and has zero entropy.

``reconad::topk_mask(activation, k, eps, grad)`` is TopK over each flattened map: ``s`` is the smallest of
the ``k`` largest values (the k-th largest, as ``kthvalue`` gives it), then eq. 2, ``relu(s - A) /
(relu(s - A) + eps)``. docs/ops/<op>.md says how each is decomposed and where it holds.

``MIN_OPSET`` is the oldest opset every decomposition here is written for (ReduceMax / ReduceMin with the
axes as an input, and the antialiased ``Resize`` of the exported graph, are opset 18).
"""
from __future__ import annotations

import math

__all__ = ["MIN_OPSET", "memory_address_onnx", "topk_mask_onnx", "translation_table"]

MIN_OPSET = 18


def memory_address_onnx(queries, keys, values, shrink_threshold: float):  # noqa: ANN001, ANN201 - ONNX values
    from onnxscript import opset18 as op

    s = op.MatMul(queries, op.Transpose(keys, perm=[1, 0]))                      # (N, K)
    lse = op.ReduceLogSumExp(s, op.Constant(value_ints=[1]), keepdims=1)         # (N, 1)
    # ln(0) = -inf: every finite s is in the support, the plain softmax
    log_thr = math.log(shrink_threshold) if shrink_threshold > 0 else -math.inf
    support = op.Greater(s, op.Add(lse, op.CastLike(op.Constant(value_float=log_thr), s)))
    any_in = op.ReduceMax(op.Cast(support, to=1), op.Constant(value_ints=[1]), keepdims=1)
    empty = op.Not(op.Greater(any_in, op.Constant(value_float=0.0)))             # (N, 1)
    keep = op.Or(support, empty)
    neg_inf = op.CastLike(op.Constant(value_float=-math.inf), s)
    zero = op.CastLike(op.Constant(value_float=0.0), s)
    s_in = op.Where(keep, s, neg_inf)
    w = op.Where(empty, zero, op.Softmax(s_in, axis=1))
    out = op.MatMul(w, values)
    lse_s = op.Where(empty, zero, op.ReduceLogSumExp(s_in, op.Constant(value_ints=[1]), keepdims=1))
    s_sup = op.Where(support, s, zero)
    row_entropy = op.Sub(lse_s, op.ReduceSum(op.Mul(w, s_sup), op.Constant(value_ints=[1]), keepdims=1))
    squeeze = op.Constant(value_ints=[1])
    return (out, op.Squeeze(row_entropy, squeeze), op.Squeeze(lse, squeeze), op.Squeeze(lse_s, squeeze))


def topk_mask_onnx(activation, k: int, eps: float, grad: str):  # noqa: ANN001, ANN201 - ONNX values
    """(mask, threshold) of ``reconad::topk_mask``; ``grad`` picks a backward and has no forward effect."""
    from onnxscript import opset18 as op

    shape = op.Shape(activation)
    lead = op.Shape(activation, end=-2)                                           # (B,) or (B, 1)
    flat = op.Flatten(activation, axis=-2)                                        # (maps, H * W)
    top, _ = op.TopK(flat, op.Constant(value_ints=[k]), axis=1, largest=1, sorted=1)
    zero = op.CastLike(op.Constant(value_float=0.0), flat)
    # the k-th largest; "+ 0" turns -0.0 into +0.0 as the op does
    s = op.Add(op.ReduceMin(top, op.Constant(value_ints=[1]), keepdims=1), zero)
    d = op.Relu(op.Sub(s, flat))
    mask = op.Div(d, op.Add(d, op.CastLike(op.Constant(value_float=eps), flat)))
    return op.Reshape(mask, shape), op.Reshape(s, lead)


def translation_table() -> dict:
    """``{torch.ops.reconad.<op>.default: decomposition}`` for every op decomposed here (imports the ops)."""
    import torch

    import reconad.ops.memory_address  # noqa: F401 - registers the ops
    import reconad.ops.topk_mask  # noqa: F401

    return {torch.ops.reconad.memory_address.default: memory_address_onnx,
            torch.ops.reconad.topk_mask.default: topk_mask_onnx}
