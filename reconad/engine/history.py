"""The training history: loss terms, learning rates and images/s every ``train.log_every_steps`` steps and per
epoch, validation AUROC where a labelled validation split exists, sent to the loggers ``train.loggers`` names
(``csv``, always on, writes ``history.csv`` in the run folder; see reconad/builtin/loggers.py).

``history.csv`` is long format, one figure a row: ``step,epoch,stage,scope,key,value`` (see
``reconad.components.HistoryRow``). Rows are appended and flushed as training goes, so a killed run keeps its
history; ``--resume`` drops the rows after the checkpoint's step and continues.
"""
from __future__ import annotations

import csv
import math
import os
import time
from typing import Any, Sequence

import torch

from ..components import HistoryRow, Logger, LogRun
from ..registry import Registry
from .runtime import RunError

__all__ = ["ALWAYS", "FIELDS", "HISTORY", "History", "build_loggers", "read_history"]

HISTORY = "history.csv"
FIELDS = list(HistoryRow._fields)
ALWAYS = "csv"   # the logger every run has, listed or not


def read_history(path: str) -> list[HistoryRow]:
    """The rows of a ``history.csv`` (a run folder or the file); an error naming the file and the expected header
    when it is not one."""
    if os.path.isdir(path):
        path = os.path.join(path, HISTORY)
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != FIELDS:
            raise RunError(f"{path}: not a reconad history: expected the header {','.join(FIELDS)}, got "
                           f"{','.join(header or [])!r}")
        for n, r in enumerate(reader, start=2):
            try:
                rows.append(HistoryRow(int(r[0]), float(r[1]), r[2], r[3], r[4], float(r[5])))
            except (ValueError, IndexError):
                raise RunError(f"{path}, line {n}: expected {len(FIELDS)} fields "
                               f"({','.join(FIELDS)}) with numbers for step, epoch and value, got {r!r}") from None
    return rows


def build_loggers(names: Sequence[str], registry: Registry) -> list[Logger]:
    """The loggers ``train.loggers`` names, ``csv`` first whether named or not; an unknown name is one error
    with the available names and the closest one, before anything is trained."""
    from ..registry import RegistryError

    loggers = []
    for name in dict.fromkeys([ALWAYS, *names]):
        try:
            spec = registry.get("logger", name)
        except RegistryError as exc:
            raise RunError(f"train.loggers: {exc}") from None
        loggers.append(spec.build())
    return loggers


class _Window:
    """Sums of the loss terms over the steps since the last row of one scope, and the images and time they took."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.sums: dict[str, float] = dict(state.get("sums", {}))
        self.steps = int(state.get("steps", 0))
        self.images = int(state.get("images", 0))
        self.seconds = float(state.get("seconds", 0.0))
        self.stage: str | None = state.get("stage")

    def add(self, logs: dict[str, float], images: int, seconds: float, stage: str) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.steps += 1
        self.images += images
        self.seconds += seconds
        self.stage = stage

    def figures(self) -> dict[str, float]:
        out = {k: v / self.steps for k, v in self.sums.items()}
        out["images_per_s"] = self.images / max(self.seconds, 1e-9)
        return out

    def state(self) -> dict[str, Any]:
        return {"sums": self.sums, "steps": self.steps, "images": self.images, "seconds": self.seconds,
                "stage": self.stage}


class History:
    """Collects each step's loss terms and writes the rows: every ``every`` steps (scope ``train``), at each
    epoch's end (scope ``epoch``) and at a change of stage (both, so no row mixes two stages); validation
    figures with ``validation`` (scope ``val``). Only the main process writes; ``state()`` goes in the
    checkpoint so a resumed run's first rows average the same steps as an uninterrupted run's."""

    def __init__(self, loggers: list[Logger], every: int, steps_per_epoch: int,
                 optimizers: Sequence[torch.optim.Optimizer], state: dict[str, Any] | None = None) -> None:
        self.loggers, self.every, self.steps_per_epoch = loggers, every, steps_per_epoch
        self.optimizers = optimizers
        state = state or {}
        self.windows = {scope: _Window(state.get(scope)) for scope in ("train", "epoch")}
        self._last = time.perf_counter()

    def start(self, run: LogRun) -> None:
        """Start every logger; stop those already started when one cannot (the run then ends before training)."""
        for i, logger in enumerate(self.loggers):
            try:
                logger.start(run)
            except BaseException:
                for started in self.loggers[:i]:
                    started.close()
                raise
        self._last = time.perf_counter()

    def _row(self, step: int, stage: str, scope: str, key: str, value: float) -> HistoryRow:
        return HistoryRow(step, round(step / self.steps_per_epoch, 6), stage, scope, key, float(value))

    def _lrs(self) -> dict[str, float]:
        lrs = [g["lr"] for opt in self.optimizers for g in opt.param_groups]
        return {"lr" if i == 0 else f"lr_{i}": float(lr) for i, lr in enumerate(lrs)}

    def _flush(self, scope: str, step: int) -> list[HistoryRow]:
        w = self.windows[scope]
        if not w.steps:
            return []
        figures = {**w.figures(), **self._lrs()}
        rows = [self._row(step, w.stage or "train", scope, k, v) for k, v in figures.items() if math.isfinite(v)]
        self.windows[scope] = _Window()
        return rows

    def step(self, step: int, stage: str, logs: dict[str, float], images: int) -> None:
        """After optimiser step ``step`` (steps done) of ``stage``, with its loss terms and batch size."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        rows: list[HistoryRow] = []
        for scope, w in self.windows.items():   # a new stage closes the rows of the previous one
            if w.stage is not None and w.stage != stage:
                rows += self._flush(scope, step - 1)
            self.windows[scope].add(logs, images, seconds, stage)
        if step % self.every == 0:
            rows += self._flush("train", step)
        if step % self.steps_per_epoch == 0:
            rows += self._flush("epoch", step)
        self._write(rows)

    def validation(self, step: int, stage: str, figures: dict[str, float]) -> None:
        self._write([self._row(step, stage, "val", k, v) for k, v in figures.items() if math.isfinite(v)])

    def finish(self, step: int) -> None:
        """Rows for the steps since the last ones (a run whose last epoch or window is partial)."""
        self._write(self._flush("train", step) + self._flush("epoch", step))

    def _write(self, rows: list[HistoryRow]) -> None:
        if rows:
            for logger in self.loggers:
                logger.log(rows)

    def state(self) -> dict[str, Any]:
        return {scope: w.state() for scope, w in self.windows.items()}

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
