"""OLED's adversarial recipe (paper 001, §3.5, eq. 8): min over R, max over MM of
``L_mask + gamma * L_cont + lambda * L_rec``, alternating updates with two Adam optimisers."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from reconad.components import Objective, StepContext

from .losses import check_cont, oled_terms

__all__ = ["OLEDObjective"]


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _trainable(module: nn.Module | None) -> list[nn.Parameter]:
    return [] if module is None else [p for p in module.parameters() if p.requires_grad]


class OLEDObjective(Objective):
    """OLED's adversarial training: per batch, ``mask_steps`` Mask Module steps maximising
    ``L_mask + gamma * L_cont`` (R frozen), then one Reconstructor step minimising
    ``L_mask + gamma * L_cont + lambda * L_rec`` (masks detached). The masker's parameters get their own
    optimiser (the config's ``train:`` optimiser and settings, ``mask_lr`` overriding its lr); with a masker
    without parameters (``random_block``: the context-autoencoder baseline of §4.6) only R is trained.
    ``cont`` is eq. 6's norm (``"l2"``, or ``"l1"`` as in the authors' code; ``reconad_oled.losses``)."""

    def __init__(self, gamma: float = 50.0, lam: float = 1.0, mask_steps: int = 1,
                 mask_lr: float | None = None, cont: str = "l2") -> None:
        if gamma < 0 or lam < 0:
            raise ValueError(f"oled objective: gamma and lam must be >= 0, got gamma={gamma}, lam={lam}")
        if mask_steps < 0:
            raise ValueError(f"oled objective: mask_steps must be >= 0, got {mask_steps}")
        self.gamma, self.lam, self.mask_steps, self.mask_lr = float(gamma), float(lam), int(mask_steps), mask_lr
        self._has_masker_opt = False
        self.cont = check_cont(cont, "oled objective")

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Eq. 8 from one forward pass's outputs; ``lambda * L_rec`` only when they carry ``recon_unmasked``
        (R(x)), which a composed model's forward does not compute (``training_step`` does)."""
        if "mask" not in outputs:
            raise ValueError("oled objective: the model has no masker (outputs carry no 'mask'); set model.masker "
                             "(oled for OLED, random_block for the context-autoencoder baseline)")
        t = oled_terms(outputs["input"], outputs["recon"], outputs["mask"], outputs.get("recon_unmasked"), self.cont)
        losses = {"mask": t.mask.mean(), "cont": t.cont.mean()}
        total = losses["mask"] + self.gamma * losses["cont"]
        if t.rec is not None:
            losses["rec"] = t.rec.mean()
            total = total + self.lam * losses["rec"]
        losses["loss"] = total
        return losses

    def configure_optimizers(self, model: nn.Module, make_optimizer: Callable[..., torch.optim.Optimizer]
                             ) -> list[torch.optim.Optimizer]:
        masker = _unwrap(model).masker
        mask_params = _trainable(masker)
        ids = {id(p) for p in mask_params}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        opts = [make_optimizer(rest)]
        self._has_masker_opt = bool(mask_params)
        if mask_params:
            opts.append(make_optimizer(mask_params, **({"lr": self.mask_lr} if self.mask_lr else {})))
        return opts

    def mask_step(self, ctx: StepContext, x: torch.Tensor) -> dict[str, float]:
        """The Mask Module's ``mask_steps`` ascent steps on ``L_mask + gamma * L_cont``, the Reconstructor frozen;
        returns ``{"mm_objective": ...}`` (nothing without a trainable masker). Public so that recipes built on
        OLED's (e.g. with a memory-augmented Reconstructor) reuse it."""
        model = _unwrap(ctx.model)
        if model is not ctx.model:
            raise RuntimeError("oled objective: alternating updates call the model's parts directly, which "
                               "DistributedDataParallel does not synchronise; train OLED in one process")
        if model.masker is None:
            raise ValueError("oled objective: set model.masker (oled, or random_block for the CAE baseline)")
        if not (self._has_masker_opt and self.mask_steps):
            return {}
        r_params = [p for n, p in model.named_parameters() if not n.startswith("masker.") and p.requires_grad]
        for p in r_params:
            p.requires_grad_(False)
        try:
            for _ in range(self.mask_steps):
                with ctx.autocast():
                    out = model(x)
                    t = oled_terms(x, out["recon"], out["mask"], cont=self.cont)
                    adv = t.mask.mean() + self.gamma * t.cont.mean()
                ctx.step(-adv, ctx.optimizers[1])  # MM maximises
        finally:
            for p in r_params:
                p.requires_grad_(True)
        return {"mm_objective": float(adv.detach())}

    def training_step(self, ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
        x = batch["image"]
        logs = self.mask_step(ctx, x)
        model = ctx.model
        # R step: the masks are fixed (no gradient to MM)
        with ctx.autocast():
            with torch.no_grad():
                x_m, mask = model.masker(x)
            t = oled_terms(x, model.reconstruct(x_m), mask, model.reconstruct(x), self.cont)
            losses = {"mask": t.mask.mean(), "cont": t.cont.mean(), "rec": t.rec.mean()}
            losses["loss"] = losses["mask"] + self.gamma * losses["cont"] + self.lam * losses["rec"]
        ctx.step(losses["loss"], ctx.optimizers[0])
        logs.update({k: float(v.detach()) for k, v in losses.items()})
        return logs
