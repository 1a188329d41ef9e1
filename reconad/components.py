"""What components exchange: the contracts behind the hooks (see docs/plugins.md)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["EvalRun", "Evaluator", "Features", "HistoryRow", "LogRun", "Logger", "MemoryRead", "Objective", "Scorer",
           "Scores", "StepContext"]

Features = Any  # a tensor, or a list of tensors for multi-scale features


class MemoryRead(NamedTuple):
    """What a memory's ``forward(features)`` returns."""

    output: Features                       # same structure and shapes as the features read
    entropy: torch.Tensor                  # scalar: mean addressing entropy (the training regulariser)
    sample_entropy: torch.Tensor | None = None  # (B,): per-image entropy, for scorers


class Scores(NamedTuple):
    """What a scorer's ``forward(outputs)`` returns.

    ``parts`` are extra named image scores, each ``(B,)`` (e.g. OLED's s_mask, s_cont, s_rec); the engine
    records part ``p`` of scorer ``s`` as a score of its own named ``f"{s}_{p}"``.
    """

    image: torch.Tensor                    # (B,), higher = more anomalous
    pixel: torch.Tensor | None = None      # (B, H, W) anomaly map, or None
    parts: dict[str, torch.Tensor] | None = None  # name -> (B,) extra image scores


class Scorer(nn.Module):
    """A scorer: subclass it and override ``forward(outputs) -> Scores``. Every optional feature has a name
    and a default here, so the engine reads it directly and a scorer overrides only what it uses:

    - ``requires``: extra ``outputs`` keys the scorer reads that reconad computes only when asked. The one it
      provides is ``"recon_unmasked"``: the reconstruction of the intact input (``ReconModel.reconstruct``),
      which masked-input methods score with. Default: nothing extra.
    - ``fixed_threshold``: a threshold on the (finalised) image score that replaces the quantile of held-out
      normal scores (e.g. paper 000's 0.9 of the set's range). Default None: the quantile.
    - ``finalize(scores)``: the set-level step, called once per scored set with the scorer's scores over the
      whole set (key ``"image"`` plus one key per part, each ``(N,)``); returns the same keys, e.g. min-max
      normalised over the set. Default: the scores unchanged.
    - ``fit_reference(scores)``: a scale taken once from normal images, so that each image is scored on its
      own. When training ends the engine calls it with ``None`` (forget any reference: ``forward`` gives raw
      scores), scores the held-out normal images, and calls it again with those raw scores (the keys of
      ``finalize``). A scorer keeps what it needs in buffers (saved with the weights) and applies it in
      ``forward`` from then on; it returns True when its scores changed (the engine then scores the held-out
      images again, for the threshold). Default: nothing, False.
    - ``set_level``: True while ``finalize`` makes an image's score depend on the other images of its set
      (min-max over the set): such a score means nothing for one image alone, and export refuses it.
      Default False.
    """

    requires: tuple[str, ...] = ()
    fixed_threshold: float | None = None
    set_level: bool = False

    def forward(self, outputs: dict[str, Any]) -> Scores:
        raise NotImplementedError(f"{type(self).__name__} must override forward(outputs) -> Scores")

    def finalize(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return scores

    def fit_reference(self, scores: dict[str, np.ndarray] | None) -> bool:
        return False


class StepContext:
    """Handed to ``Objective.training_step``: the model, its optimisers and the step helpers.

    ``autocast()`` enters mixed precision when ``train.amp`` is on; ``step(loss, optimizer)`` does
    zero_grad, backward (through the grad scaler under fp16), optional gradient clipping, and the step.
    The trainer sets ``step_index`` (optimiser steps done so far, counting resumed ones), ``epoch``,
    ``steps_per_epoch`` and ``total_steps`` before every ``training_step``, for phase schedules
    (pre-train then freeze, progressive input sizes, ...).
    """

    def __init__(self, model: nn.Module, optimizers: list[torch.optim.Optimizer], device: torch.device,
                 amp: bool = False, grad_clip: float | None = None, step: int = 0) -> None:
        self.model = model
        self.optimizers = optimizers
        self.device = device
        self.amp = amp
        self.grad_clip = grad_clip
        self.step_index = step
        self.epoch = 0
        self.steps_per_epoch = 1
        self.total_steps = 1
        self._dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and self._dtype == torch.float16)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with torch.autocast(self.device.type, dtype=self._dtype, enabled=self.amp):
            yield

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(optimizer)
            group_params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(group_params, self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()


class Objective:
    """A training objective and recipe. Subclass it and override ``loss``; override
    ``configure_optimizers`` / ``training_step`` for recipes beyond one optimiser and one loss."""

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def configure_optimizers(self, model: nn.Module, make_optimizer: Callable[..., torch.optim.Optimizer]
                             ) -> list[torch.optim.Optimizer]:
        """``make_optimizer(params, **overrides)`` builds the optimiser the config's ``train:`` names."""
        return [make_optimizer(p for p in model.parameters() if p.requires_grad)]

    def training_step(self, ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
        with ctx.autocast():
            outputs = ctx.model(batch["image"])
            losses = self.loss(outputs, batch)
        ctx.step(losses["loss"], ctx.optimizers[0])
        return {k: float(v.detach()) for k, v in losses.items()}

    def stage(self, step_index: int, steps_per_epoch: int) -> str:
        """The name of the recipe's stage at optimiser step ``step_index`` (0-based), for the progress bar and
        the history: ``"train"`` for one-stage recipes; multi-stage recipes name each stage."""
        return "train"

    def check_schedule(self, steps_per_epoch: int, total_steps: int) -> None:
        """Called once before training: raise ``ValueError`` saying what to change when the recipe does not
        fit the run's ``total_steps`` (e.g. a pre-training phase that takes every step)."""

    def state_dict(self) -> dict[str, Any]:
        """Objectives with state of their own (schedules, EMA, ...) save it here."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class HistoryRow(NamedTuple):
    """One figure of the training history (a row of ``history.csv``): after optimiser step ``step`` (steps done),
    ``epoch`` = step / steps per epoch, the objective's ``stage`` then, ``scope`` ``train`` (every
    ``train.log_every_steps`` steps), ``epoch`` (epoch means) or ``val`` (the validation split), ``key`` (a loss
    term, ``lr``, ``images_per_s``, ``auroc``) and its ``value``."""

    step: int
    epoch: float
    stage: str
    scope: str
    key: str
    value: float


@dataclass(frozen=True)
class LogRun:
    """What a logger learns when training starts: the run folder, the resolved config and, on ``--resume``, the
    checkpoint's step (rows after it were written by the run that stopped and are logged again)."""

    out_dir: str
    config: dict[str, Any]
    resume_step: int | None = None


class Logger:
    """A destination of the training history (``train.loggers``). ``start`` runs before the first step: raise
    ``reconad.engine.RunError`` there when the destination cannot be written, so a run never fails half-way;
    ``log`` receives rows as training goes; ``close`` runs when training ends or stops."""

    def start(self, run: LogRun) -> None:
        pass

    def log(self, rows: Sequence[HistoryRow]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class EvalRun:
    """What an evaluator measures, once the run's test set is scored: the trained ``model`` (eval mode, on
    ``device``), the run's data ``splits`` (``test``, ``holdout``, ``validation``: a ``reconad.data.DatasetSplits``),
    the test set's ``scores`` (a ``reconad.engine.evaluate.ScoreSet``: image scores, ``labels``, pixel maps and
    masks where the scorers and the dataset give them), the resolved ``config`` and ``batch_size``
    (``test.batch_size``)."""

    model: nn.Module
    splits: Any
    scores: Any
    device: torch.device
    config: dict[str, Any]
    batch_size: int


class Evaluator:
    """A measurement a paper defines beyond reconad's metrics, selected by ``test.evaluators``. ``check(model)``
    runs when the model is built, before training (and before ``reconad test`` scores): raise ``ValueError``
    there when this evaluator cannot measure such a model. ``evaluate(run)`` returns named numbers (None where
    undefined), written under ``metrics.json["evaluators"][<name>]``, shown in the report and summarised by
    ``reconad benchmark``."""

    def check(self, model: nn.Module) -> None:
        pass

    def evaluate(self, run: EvalRun) -> dict[str, float | None]:
        raise NotImplementedError
