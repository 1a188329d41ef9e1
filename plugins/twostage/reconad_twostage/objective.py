"""The two-stage training recipe (paper 003 §3.2) as a reusable objective: pre-train one component on a
pretext task with its own optimiser, then freeze it and train the rest of the model."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reconad.components import Objective, StepContext
from reconad.metrics import ssim

from .pretext import build_pretext

__all__ = ["TwoStageObjective"]

COMPONENTS = ("encoder", "decoder", "memory", "masker")
LOSS_KINDS = ("mse", "ssim")


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)   # DistributedDataParallel


class TwoStageObjective(Objective):
    """Stage 1: ``pretrain_epochs`` (or ``pretrain_steps``) of the ``pretext`` task (``rotation``: RotNet,
    eqs. 1-2) on the ``pretrain`` component, SGD (``pretrain_lr`` 0.1, momentum, weight decay, cosine decay
    over the stage). Stage 2: the ``freeze`` component is frozen (no gradients, eval mode so its BatchNorm
    statistics stay fixed) and the rest is trained with Adam (``lr`` 2e-4), each reconstruction in
    ``losses`` with its own loss: ``{recon: mse, recon_ssim: ssim}`` (eqs. 8-9; "ssim" is -SSIM).

    The phase is a function of the step (``StepContext.step_index``), so a resumed run continues in the
    right phase. ``train.epochs`` / ``train.steps`` count both stages; ``train.optimizer`` and ``train.lr``
    are not used (the paper fixes both optimisers). ``freeze: none`` with ``pretrain_epochs: 0`` trains
    everything end to end (the CAE baseline).
    """

    def __init__(self, pretext: str = "rotation", pretext_options: dict[str, Any] | None = None,
                 pretrain: str = "encoder", pretrain_epochs: int = 10, pretrain_steps: int | None = None,
                 pretrain_lr: float = 0.1, pretrain_momentum: float = 0.9, pretrain_weight_decay: float = 5e-4,
                 pretrain_schedule: Literal["cosine", "constant"] = "cosine", freeze: str = "encoder",
                 lr: float = 2e-4, betas: list[float] = (0.5, 0.999),
                 losses: dict[str, str] | None = None, data_range: float = 1.0) -> None:
        for key, value in (("pretrain", pretrain), ("freeze", freeze)):
            allowed = COMPONENTS + (("none",) if key == "freeze" else ())
            if value not in allowed:
                raise ValueError(f"twostage objective: {key} must name a model component ({', '.join(allowed)}), "
                                 f"got {value!r}")
        if pretrain_epochs < 0 or (pretrain_steps is not None and pretrain_steps < 0):
            raise ValueError(f"twostage objective: pretrain_epochs / pretrain_steps must be >= 0, got "
                             f"{pretrain_epochs} / {pretrain_steps}")
        losses = dict(losses) if losses is not None else {"recon": "mse", "recon_ssim": "ssim"}
        if not losses:
            raise ValueError("twostage objective: losses must map at least one output key to a loss (mse or ssim)")
        for key, kind in losses.items():
            if kind not in LOSS_KINDS:
                raise ValueError(f"twostage objective: losses.{key} must be one of {', '.join(LOSS_KINDS)}, got {kind!r}")
        if len(betas) != 2:
            raise ValueError(f"twostage objective: betas must be two numbers, got {list(betas)}")
        self.pretext_name = pretext
        self.pretext = build_pretext(pretext, pretext_options)
        self.pretrain, self.freeze = pretrain, freeze
        self.pretrain_epochs, self.pretrain_steps = pretrain_epochs, pretrain_steps
        self.pretrain_lr, self.pretrain_momentum = pretrain_lr, pretrain_momentum
        self.pretrain_weight_decay, self.pretrain_schedule = pretrain_weight_decay, pretrain_schedule
        self.lr, self.betas = lr, tuple(float(b) for b in betas)
        self.losses, self.data_range = losses, data_range

    # ---------------------------------------------------------------------------------------- phases
    def stage1_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of stage 1 (``pretrain_steps`` when set, else ``pretrain_epochs`` epochs)."""
        return self.pretrain_steps if self.pretrain_steps is not None else self.pretrain_epochs * steps_per_epoch

    def stage(self, step_index: int, steps_per_epoch: int) -> str:
        """``pretrain_<pretext>`` during stage 1, then ``reconstruction``."""
        if step_index < self.stage1_steps(steps_per_epoch):
            return f"pretrain_{self.pretext_name}"
        return "reconstruction"

    def _component(self, model: nn.Module, name: str) -> nn.Module:
        comp = getattr(_unwrap(model), name, None)
        if not isinstance(comp, nn.Module):
            raise ValueError(f"twostage objective: the model has no {name} to pre-train or freeze")
        return comp

    def freeze_component(self, model: nn.Module) -> None:
        """Stage 2's freeze: no gradients and eval mode (fixed BatchNorm statistics) for ``freeze``."""
        if self.freeze != "none":
            comp = self._component(model, self.freeze)
            comp.eval()
            comp.requires_grad_(False)

    # ----------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self, model: nn.Module, make_optimizer: Callable[..., torch.optim.Optimizer]
                             ) -> list[torch.optim.Optimizer]:
        """[SGD over the pre-trained component, Adam over everything stage 2 trains]."""
        pre = list(self._component(model, self.pretrain).parameters())
        frozen = set() if self.freeze == "none" else {id(p) for p in self._component(model, self.freeze).parameters()}
        rest = [p for p in model.parameters() if id(p) not in frozen]
        if not rest:
            raise ValueError(f"twostage objective: freezing the {self.freeze} leaves no parameter to train in stage 2")
        sgd = torch.optim.SGD(pre, lr=self.pretrain_lr, momentum=self.pretrain_momentum,
                              weight_decay=self.pretrain_weight_decay)
        adam = torch.optim.Adam(rest, lr=self.lr, betas=self.betas)
        return [sgd, adam]

    # ---------------------------------------------------------------------------------------- losses
    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Stage 2's loss: the sum of each reconstruction's own loss. The decoders share no parameter, so
        each one's gradient comes from its own term only."""
        x = outputs["input"].float()
        logs: dict[str, torch.Tensor] = {}
        total = x.new_zeros(())
        for key, kind in self.losses.items():
            if key not in outputs:
                raise KeyError(f"twostage objective: losses names output {key!r} but the model returns "
                               f"{', '.join(sorted(outputs))}; use the twostage_dual decoder or change losses")
            rec = outputs[key].float()
            term = F.mse_loss(rec, x) if kind == "mse" else -ssim(x, rec, data_range=self.data_range)
            logs[f"{key}_{kind}"] = term
            total = total + term
        logs["loss"] = total
        return logs

    def check_schedule(self, steps_per_epoch: int, total_steps: int) -> None:
        n1 = self.stage1_steps(steps_per_epoch)
        if n1 >= total_steps:
            raise ValueError(f"twostage objective: stage 1 takes {n1} steps (pretrain_epochs={self.pretrain_epochs}, "
                             f"pretrain_steps={self.pretrain_steps}, {steps_per_epoch} steps per epoch) but "
                             f"training has {total_steps} steps in all, leaving none for stage 2; raise "
                             f"train.epochs / train.steps or lower the pretraining")

    def training_step(self, ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
        self.check_schedule(ctx.steps_per_epoch, ctx.total_steps)
        n1 = self.stage1_steps(ctx.steps_per_epoch)
        sgd, adam = ctx.optimizers[0], ctx.optimizers[1]
        if ctx.step_index < n1:
            comp = self._component(ctx.model, self.pretrain)
            comp.train()
            comp.requires_grad_(True)
            scale = 1.0 if self.pretrain_schedule == "constant" else 0.5 * (1 + math.cos(math.pi * ctx.step_index / n1))
            for group in sgd.param_groups:
                group["lr"] = self.pretrain_lr * scale
            with ctx.autocast():
                losses = self.pretext.loss(comp, batch["image"])
            ctx.step(losses["loss"], sgd)
            return {"loss": float(losses["loss"].detach()), "stage": 1.0,
                    **{f"pretext_{k}" if not k.startswith("pretext") else k: float(v.detach())
                       for k, v in losses.items() if k != "loss"}}
        self.freeze_component(ctx.model)
        with ctx.autocast():
            outputs = ctx.model(batch["image"])
            losses = self.loss(outputs, batch)
        ctx.step(losses["loss"], adam)
        return {**{k: float(v.detach()) for k, v in losses.items()}, "stage": 2.0}
