"""OLED's loss terms (paper 001, eqs. 5-8), per image, in the paper's [-1, 1] scale.

With ``x`` the image, ``M = MM(x)`` the mask (1 kept, 0 hidden), ``x_m`` the masked image and ``N = C*H*W``::

    L_mask = ||x - R(x_m)||^2 / N                          eq. 5: the whole image, squared L2
    L_cont = ||x_c - R(x_c)||_2 / sqrt(N)                  eq. 6: the masked (hidden) region only, cont="l2" (default)
          or ||x_c - R(x_c)||_1 / N                        cont="l1": the authors' code's mean absolute error
             x_c = (1 - M) * x,  R(x_c) = (1 - M) * R(x_m)   the hidden region of the image and of its reconstruction
    L_rec  = ||x - R(x)||^2 / N                            eq. 7: the intact image, squared L2

``R(x_c)`` is read as "the reconstruction of the masked region" (§3.5): the hidden region of R's inpainting
``R(x_m)``, the context-encoder loss that §3.5 says keeps the masked region from being blurry. Dividing by
``N`` / ``sqrt(N)`` makes the terms independent of the image size; it only rescales gamma and lambda. The
objective (eq. 8) is ``L_mask + gamma * L_cont + lambda * L_rec``, each averaged over the batch; the Mask Module
maximises ``L_mask + gamma * L_cont`` (it has no bearing on L_rec).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["CONT_NORMS", "OLEDTerms", "check_cont", "oled_terms"]

CONT_NORMS = ("l2", "l1")  # eq. 6's norm: Euclidean, or the authors' code's absolute error


def check_cont(cont: str, who: str) -> str:
    """``cont`` if it names one of ``CONT_NORMS``, else a ValueError that starts with ``who``."""
    if cont not in CONT_NORMS:
        raise ValueError(f"{who}: cont must be 'l2' or 'l1' (the norm of L_cont, eq. 6), got {cont!r}")
    return cont


class OLEDTerms(NamedTuple):
    """Per-image terms, each (B,); ``rec`` is None when ``R(x)`` was not given."""

    mask: torch.Tensor
    cont: torch.Tensor
    rec: torch.Tensor | None


def oled_terms(x: torch.Tensor, recon_masked: torch.Tensor, mask: torch.Tensor,
               recon: torch.Tensor | None = None, cont: str = "l2") -> OLEDTerms:
    """The three terms for images ``x`` (B, C, H, W) in [0, 1], ``recon_masked = R(x_m)`` and ``recon = R(x)``
    in [0, 1], and ``mask`` (B, 1, H, W). Differences of [0, 1] values are doubled to the paper's scale.
    ``cont`` picks eq. 6's norm: ``"l2"`` or ``"l1"``."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"oled losses: mask must be (B, 1, H, W) = {(x.shape[0], 1, *x.shape[-2:])}, "
                         f"got {tuple(mask.shape)}")
    n = x[0].numel()
    x = x.float()
    diff = 2.0 * (x - recon_masked.float())
    l_mask = diff.pow(2).flatten(1).sum(1) / n
    hidden = (1.0 - mask.float())
    if check_cont(cont, "oled losses") == "l2":
        l_cont = torch.linalg.vector_norm((hidden * diff).flatten(1), ord=2, dim=1) / n ** 0.5
    else:
        l_cont = (hidden * diff).abs().flatten(1).sum(1) / n
    l_rec = None
    if recon is not None:
        l_rec = (2.0 * (x - recon.float())).pow(2).flatten(1).sum(1) / n
    return OLEDTerms(l_mask, l_cont, l_rec)
