"""The training objectives (1), (2) and (3) of §3.1, exactly as written, per image and averaged over the batch.

With E = F(X_hat) - X, the binary mask M broadcast over the C channels (the paper's M is n x m x 3) and
M_bar = 1 - M::

    (1)  lam / ||M_bar||_1 * ||M_bar * E||_2  +  (1 - lam) / ||M||_1 * ||M * E||_2
    (2)  lam / ||M_bar||_1 * ||M_bar * E||_2  -  (1 - lam) / ||M||_1 * ||M * E||_2
    (3)  lam / ||M_bar||_1 * ||M_bar * E||_2  -  (1 - lam) / ||D||_1 * ||D * E||_2,   D = |X_hat - X|

||.||_2 is the (unsquared) Euclidean norm over all C x H x W entries, ||.||_1 the sum of absolute values. A
term whose weight tensor is all zeros (no distortion; a mask covering the whole image) is 0.
"""
from __future__ import annotations

import torch

__all__ = ["selfsup_loss", "weighted_norm_term"]


def weighted_norm_term(weight: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """``||weight * error||_2 / ||weight||_1`` per image: ``(B,)``; 0 where ``weight`` is all zeros."""
    b = error.shape[0]
    weight = weight.expand_as(error)
    num = torch.linalg.vector_norm((weight * error).reshape(b, -1), ord=2, dim=1)
    den = weight.abs().reshape(b, -1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(error.dtype).tiny), torch.zeros_like(num))


def selfsup_loss(recon: torch.Tensor, target: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor,
                 objective: int = 3, lam: float = 0.5) -> dict[str, torch.Tensor]:
    """Objective (1), (2) or (3) for a batch.

    Args:
        recon: F(X_hat), ``(B, C, H, W)``.
        target: the clean images X.
        x_hat: the distorted inputs X_hat (only (3) reads them).
        mask: M, ``(B, 1, H, W)`` or ``(B, C, H, W)``, 1 where X_hat was distorted.
        objective: 1, 2 or 3.
        lam: lambda in [0, 1], the weight of the normal-region term.

    Returns:
        ``loss`` (the batch mean of the objective), ``normal`` and ``distorted`` (the batch means of the two
        norm terms, unweighted).
    """
    if objective not in (1, 2, 3):
        raise ValueError(f"selfsup objective must be 1, 2 or 3 (the paper's equations), got {objective!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"selfsup lam must be in [0, 1], got {lam}")
    if recon.shape != target.shape or x_hat.shape != target.shape:
        raise ValueError(f"selfsup loss: recon {tuple(recon.shape)}, target {tuple(target.shape)} and x_hat "
                         f"{tuple(x_hat.shape)} must have one shape")
    error = recon - target
    m = mask.to(error.dtype)
    normal = weighted_norm_term(1 - m, error)
    weight = (x_hat - target).abs() if objective == 3 else m
    distorted = weighted_norm_term(weight, error)
    sign = 1.0 if objective == 1 else -1.0
    loss = (lam * normal + sign * (1 - lam) * distorted).mean()
    return {"loss": loss, "normal": normal.mean(), "distorted": distorted.mean()}
