"""Tiny two-stage models shared by the twostage tests."""
from __future__ import annotations

import torch

from reconad.components import StepContext
from reconad.config import validate
from reconad.model import build_model
from reconad.plugins import get_registry

REGISTRY = get_registry()
SIZE = 16


def tiny_model(channels: int = 1, objective: dict | None = None, decoder: str = "twostage_dual"):
    raw = {"data": {"name": "digits", "image_size": SIZE},
           "model": {"encoder": {"name": "twostage_rotnet", "width": 4},
                     "decoder": {"name": decoder, "width": 4},
                     "scorers": ["twostage"] if decoder == "twostage_dual" else ["l2"],
                     "objective": {"name": "twostage", "pretrain_steps": 3, **(objective or {})}}}
    cfg = validate(raw, REGISTRY)
    return build_model(cfg.model, REGISTRY, channels, SIZE)


def context(model, objective, steps_per_epoch: int = 2, total_steps: int = 6) -> StepContext:
    from reconad.engine.trainer import make_optimizer_factory
    from reconad.config import TrainConfig

    opts = objective.configure_optimizers(model, make_optimizer_factory(TrainConfig()))
    ctx = StepContext(model, opts, torch.device("cpu"))
    ctx.steps_per_epoch, ctx.total_steps = steps_per_epoch, total_steps
    return ctx
