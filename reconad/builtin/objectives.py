"""The built-in training objective: reconstruction loss + memory entropy (+ a VAE's KL term)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from ..components import Objective

__all__ = ["ReconstructionObjective"]


class ReconstructionObjective(Objective):
    """Mean squared (or absolute) reconstruction error, plus ``entropy_weight`` x the memory's addressing
    entropy when the model has a memory (MemAE's loss), plus ``kl_weight`` x ``outputs["kl"]`` when a
    component provides one (a variational encoder).

    A paper whose loss differs only in the error overrides ``reconstruction``; one whose loss has no KL term
    sets ``kl_term = False``, so a variational encoder's ``outputs["kl"]`` is left out of it."""

    kl_term: ClassVar[bool] = True

    def __init__(self, loss: Literal["mse", "l1"] = "mse", entropy_weight: float = 0.0002,
                 kl_weight: float = 1.0) -> None:
        self.kind, self.entropy_weight, self.kl_weight = loss, entropy_weight, kl_weight

    def reconstruction(self, outputs: dict[str, Any]) -> torch.Tensor:
        """The batch's reconstruction term (a scalar, ``losses["rec"]``): the mean squared or absolute error."""
        recon, target = outputs["recon"].float(), outputs["input"].float()
        return F.mse_loss(recon, target) if self.kind == "mse" else F.l1_loss(recon, target)

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        rec = self.reconstruction(outputs)
        losses = {"rec": rec}
        total = rec
        mem = outputs.get("memory")
        if mem is not None:
            losses["entropy"] = mem.entropy.float()
            total = total + self.entropy_weight * losses["entropy"]
        if self.kl_term and outputs.get("kl") is not None:
            losses["kl"] = outputs["kl"].float()
            total = total + self.kl_weight * losses["kl"]
        losses["loss"] = total
        return losses
