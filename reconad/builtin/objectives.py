"""The built-in training objective: reconstruction loss + memory entropy (+ a VAE's KL term)."""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..components import Objective

__all__ = ["ReconstructionObjective"]


class ReconstructionObjective(Objective):
    """Mean squared (or absolute) reconstruction error, plus ``entropy_weight`` x the memory's addressing
    entropy when the model has a memory (MemAE's loss), plus ``kl_weight`` x ``outputs["kl"]`` when a
    component provides one (a variational encoder)."""

    def __init__(self, loss: Literal["mse", "l1"] = "mse", entropy_weight: float = 0.0002,
                 kl_weight: float = 1.0) -> None:
        self.kind, self.entropy_weight, self.kl_weight = loss, entropy_weight, kl_weight

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        recon, target = outputs["recon"].float(), outputs["input"].float()
        rec = F.mse_loss(recon, target) if self.kind == "mse" else F.l1_loss(recon, target)
        losses = {"rec": rec}
        total = rec
        mem = outputs.get("memory")
        if mem is not None:
            losses["entropy"] = mem.entropy.float()
            total = total + self.entropy_weight * losses["entropy"]
        if outputs.get("kl") is not None:
            losses["kl"] = outputs["kl"].float()
            total = total + self.kl_weight * losses["kl"]
        losses["loss"] = total
        return losses
