"""Progress a person can watch: the training bar (epoch x/y, the recipe's stage, the loss terms, images/s) and
one bar per scoring pass (images scored, ETA).

Three modes, chosen once per process (``set_mode``; the ``reconad`` command's ``--quiet``):

- ``bar``: tqdm bars on stderr, when stderr is a terminal;
- ``log``: plain lines instead, when stderr is not a terminal (CI logs, files): one per epoch and one per scoring
  pass, without carriage returns or escape codes;
- ``quiet``: no bars and no progress lines; ``say`` prints nothing either (errors and a command's result lines
  are printed by the command itself).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Literal

__all__ = ["Mode", "ScoreProgress", "TrainProgress", "get_mode", "length_line", "say", "set_mode"]

Mode = Literal["auto", "bar", "log", "quiet"]
_mode: Mode = "auto"


def set_mode(mode: Mode) -> Mode:
    """``auto`` (bars on a terminal, plain lines elsewhere), ``bar``, ``log`` or ``quiet``; returns the mode
    set before, to restore."""
    global _mode
    if mode not in ("auto", "bar", "log", "quiet"):
        raise ValueError(f"progress mode: expected auto, bar, log or quiet, got {mode!r}")
    before, _mode = _mode, mode
    return before


def get_mode() -> Mode:
    """The mode in effect: ``auto`` resolved by whether stderr is a terminal."""
    if _mode != "auto":
        return _mode
    isatty = getattr(sys.stderr, "isatty", None)
    return "bar" if isatty is not None and isatty() else "log"


def say(message: str) -> None:
    """An informational line (the engine's default ``log``): printed unless quiet."""
    if get_mode() != "quiet":
        print(message, flush=True)


def _line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def length_line(total: int, steps_per_epoch: int, batch: int) -> str:
    """``training 200 steps = 10 epochs of 20 batches (32 images each)``: what a run's length means."""
    epochs = total / steps_per_epoch
    return (f"training {total} steps = {epochs:.4g} epoch{'' if epochs == 1 else 's'} of {steps_per_epoch} "
            f"batch{'' if steps_per_epoch == 1 else 'es'} ({batch} images each)")


def _terms(sums: dict[str, float], count: int) -> str:
    return " ".join(f"{k}={v / max(count, 1):.4g}" for k, v in sums.items())


class TrainProgress:
    """The training bar over steps: ``epoch 3/10 reconstruction`` with the loss terms (averaged over the steps
    since the last report) and images/s. In ``log`` mode one line per epoch (and at the last step)."""

    def __init__(self, name: str, total: int, steps_per_epoch: int, start: int, objective: Any,
                 enabled: bool = True) -> None:
        self.total, self.per_epoch, self.objective = total, steps_per_epoch, objective
        self.epochs = -(-total // steps_per_epoch)
        self.mode = get_mode() if enabled else "quiet"
        self.sums: dict[str, float] = {}
        self.count, self.images, self.t0 = 0, 0, time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc=f"train {name}",
                            mininterval=0.2)

    def _where(self, step: int) -> str:
        """The epoch and stage of the step just done (``step`` steps done)."""
        index = max(step - 1, 0)
        return f"epoch {index // self.per_epoch + 1}/{self.epochs} {self.objective.stage(index, self.per_epoch)}"

    def update(self, step: int, logs: dict[str, float], images: int) -> None:
        """Step ``step`` (1-based count of steps done) finished with loss terms ``logs`` on ``images`` images."""
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1
        self.images += images
        rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.set_description_str(self._where(step), refresh=False)
            self.bar.set_postfix_str(f"{_terms(self.sums, self.count)} {rate:.0f} img/s", refresh=False)
            self.bar.update(step - self.bar.n)
            if step % self.per_epoch == 0:   # the bar shows each epoch's mean, then starts the next
                self._reset()
        elif self.mode == "log" and (step % self.per_epoch == 0 or step == self.total):
            _line(f"{self._where(step)} step {step}/{self.total}: {_terms(self.sums, self.count)} {rate:.0f} img/s")
            self._reset()

    def _reset(self) -> None:
        self.sums, self.count, self.images, self.t0 = {}, 0, 0, time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ScoreProgress:
    """One scoring pass (``what``: "test images", "held-out normal images"...): a bar over images with its ETA,
    or in ``log`` mode one line when the pass ends."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what, self.total, self.done = what, total, 0
        self.mode = get_mode()
        self.t0 = time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="img", dynamic_ncols=True, desc=f"score {what}", leave=False,
                            mininterval=0.2)

    def update(self, images: int) -> None:
        self.done += images
        if self.bar is not None:
            self.bar.update(images)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.done and (self.total is None or self.done >= self.total):
            seconds = time.perf_counter() - self.t0
            _line(f"scored {self.done} {self.what} in {seconds:.1f} s ({self.done / max(seconds, 1e-9):.0f} img/s)")

    def __enter__(self) -> ScoreProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
