"""The method: OLED's adversarial recipe (paper 001, eq. 8) for a Reconstructor that reads memories (MMAE,
paper 002), so the Reconstructor's loss also carries the memories' addressing entropy (MMAE eq. 9).

Per batch: the Mask Module takes ``mask_steps`` ascent steps on ``L_mask + gamma L_cont`` (OLED's own step,
inherited), then the Reconstructor (encoder, memories, decoder) one descent step on
``L_mask + gamma L_cont + lambda L_rec + entropy_weight * E``, where ``E`` is the mean addressing entropy of the
memory reads of the masked image. Everything comes from the two plugins' public modules; nothing here knows
how many scales the memory has.
"""
from __future__ import annotations

from typing import Any

import torch
from reconad.components import StepContext
from reconad_oled.losses import oled_terms
from reconad_oled.objective import OLEDObjective

__all__ = ["MaskedMemoryObjective"]


class MaskedMemoryObjective(OLEDObjective):
    """OLED's adversarial training with a memory-augmented Reconstructor: the Reconstructor's loss adds
    ``entropy_weight`` x the memories' addressing entropy (MMAE / MemAE's sparsity term)."""

    def __init__(self, gamma: float = 50.0, lam: float = 1.0, mask_steps: int = 1, mask_lr: float | None = None,
                 entropy_weight: float = 0.0002) -> None:
        super().__init__(gamma=gamma, lam=lam, mask_steps=mask_steps, mask_lr=mask_lr)
        if entropy_weight < 0:
            raise ValueError(f"maskedmem objective: entropy_weight must be >= 0, got {entropy_weight}")
        self.entropy_weight = float(entropy_weight)

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        losses = super().loss(outputs, batch)
        mem = outputs.get("memory")
        if mem is not None:
            losses["entropy"] = mem.entropy.float()
            losses["loss"] = losses["loss"] + self.entropy_weight * losses["entropy"]
        return losses

    def training_step(self, ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
        model = ctx.model
        x = batch["image"]
        logs = self.mask_step(ctx, x)  # OLED: the Mask Module's ascent step(s), the Reconstructor frozen
        with ctx.autocast():
            with torch.no_grad():
                x_m, mask = model.masker(x)  # the masks are fixed for the Reconstructor's step
            out_m = model.encode_decode(x_m)  # keeps the memory read, for its entropy
            read = out_m.get("memory")
            t = oled_terms(x, out_m["recon"], mask, model.reconstruct(x))
            losses = {"mask": t.mask.mean(), "cont": t.cont.mean(), "rec": t.rec.mean()}
            total = losses["mask"] + self.gamma * losses["cont"] + self.lam * losses["rec"]
            if read is not None:
                losses["entropy"] = read.entropy.float()
                total = total + self.entropy_weight * losses["entropy"]
            losses["loss"] = total
        ctx.step(losses["loss"], ctx.optimizers[0])
        logs.update({k: float(v.detach()) for k, v in losses.items()})
        return logs
