"""Pretext tasks for stage 1 of the two-stage recipe, and the registry other plugins add theirs to.

A pretext task is built by a factory ``factory(**options)`` registered under a name in ``PRETEXT_TASKS``
(use ``register_pretext``); the ``twostage`` objective looks its ``pretext`` option up there. A task has
one method::

    loss(component: nn.Module, images: Tensor (B, C, H, W)) -> dict[str, Tensor]   # with a scalar "loss"

where ``component`` is the model part being pre-trained (``twostage``'s ``pretrain``, the encoder by
default). Everything it needs (e.g. a classification head) must live in that component, so it is saved in
checkpoints and optimised by the pretext optimiser. Another plugin reuses the regime with its own task::

    from reconad_twostage.pretext import register_pretext
    register_pretext("jigsaw", JigsawPretext)    # at import of its plugin module; config: pretext: jigsaw
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRETEXT_TASKS", "PretextTask", "RotationPretext", "build_pretext", "register_pretext", "rotate_batch"]


class PretextTask(Protocol):
    def loss(self, component: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]: ...


def rotate_batch(x: torch.Tensor, rotations: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under every rotation by t * 360 / ``rotations`` degrees (counter-clockwise), t = 0..K-1:
    ``(K * B, C, H, W)`` images ordered ``[h(x|0); h(x|1); ...]`` and their labels t ``(K * B,)``.

    Only quarter turns are exact on a pixel grid, so ``rotations`` must be 4 (0/90/180/270, RotNet's set)
    or 2 (0/180).
    """
    if rotations not in (2, 4):
        raise ValueError(f"rotation pretext: rotations must be 4 (0/90/180/270) or 2 (0/180), got {rotations}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation pretext: needs square images, got {tuple(x.shape[-2:])}")
    step = 4 // rotations
    images = torch.cat([torch.rot90(x, t * step, dims=(-2, -1)) for t in range(rotations)])
    labels = torch.arange(rotations, device=x.device).repeat_interleave(x.shape[0])
    return images, labels


class RotationPretext:
    """RotNet (Gidaris et al. 2018; paper 003 eqs. 1-2): predict which of the K rotations was applied, with the
    cross-entropy L_r = -1/K sum_t log F^t(h(x|t)) averaged over the batch. The component must define
    ``pretext_logits(x) -> (N, K)`` (``twostage_rotnet`` does)."""

    def __init__(self, rotations: int = 4) -> None:
        self.rotations = rotations

    def loss(self, component: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        head = getattr(component, "pretext_logits", None)
        if not callable(head):
            raise TypeError(f"rotation pretext: the pre-trained component ({type(component).__name__}) must "
                            f"define pretext_logits(x) -> (N, {self.rotations}) logits; the twostage_rotnet "
                            f"encoder does")
        x, labels = rotate_batch(images, self.rotations)
        logits = head(x)
        if logits.shape != (x.shape[0], self.rotations):
            raise ValueError(f"rotation pretext: pretext_logits returned shape {tuple(logits.shape)}, expected "
                             f"({x.shape[0]}, {self.rotations}); set the encoder's rotations to {self.rotations}")
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "pretext_acc": acc.detach()}


PRETEXT_TASKS: dict[str, Callable[..., PretextTask]] = {"rotation": RotationPretext}


def register_pretext(name: str, factory: Callable[..., PretextTask]) -> None:
    """Add a pretext task under ``name`` (an error if the name is taken by a different factory)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_pretext: name must be a non-empty str, got {name!r}")
    old = PRETEXT_TASKS.get(name)
    if old is not None and old is not factory:
        raise ValueError(f"register_pretext: pretext task {name!r} is already registered ({old!r})")
    PRETEXT_TASKS[name] = factory


def build_pretext(name: str, options: dict[str, Any] | None = None) -> PretextTask:
    if name not in PRETEXT_TASKS:
        raise ValueError(f"twostage objective: unknown pretext task {name!r}; registered: {', '.join(sorted(PRETEXT_TASKS))} "
                         f"(add one with reconad_twostage.pretext.register_pretext)")
    return PRETEXT_TASKS[name](**(options or {}))
