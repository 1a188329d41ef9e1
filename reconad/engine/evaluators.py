"""``test.evaluators``: a paper's own measurements of a tested run (``reconad.components.Evaluator``), built and
checked against the model before training, run once the test set is scored; their numbers go under
``metrics.json["evaluators"][<name>]``."""
from __future__ import annotations

import math
import numbers
from typing import Any

from torch import nn

from ..components import EvalRun, Evaluator
from ..config import Config
from ..registry import Registry
from .runtime import RunError

__all__ = ["build_evaluators", "run_evaluators"]


def build_evaluators(cfg: Config, registry: Registry, model: nn.Module) -> list[tuple[str, Evaluator]]:
    """Each evaluator ``test.evaluators`` names, built from its options and checked against ``model``; one that
    cannot measure it is a :class:`RunError` naming the evaluator (before anything is trained or scored)."""
    out = []
    for i, c in enumerate(cfg.evaluators):
        where = f"test.evaluators[{i}] ({c.name})"
        try:
            evaluator = registry.get("evaluator", c.name).build(**c.params)
        except ValueError as exc:
            raise RunError(f"{where}: {exc}") from None
        if not isinstance(evaluator, Evaluator):
            raise RunError(f"{where}: the factory returned a {type(evaluator).__name__}; an evaluator subclasses "
                           "reconad.components.Evaluator")
        try:
            evaluator.check(model)
        except ValueError as exc:
            raise RunError(f"{where}: cannot measure this model: {exc}") from None
        out.append((c.name, evaluator))
    return out


def run_evaluators(evaluators: list[tuple[str, Evaluator]], run: EvalRun) -> dict[str, dict[str, float | None]]:
    """``{name: {key: number or None}}``: each evaluator's ``evaluate(run)``, its values checked (a value that is
    not a number, a result that is not a mapping of names, or a ``ValueError`` it raises is a :class:`RunError`
    naming the evaluator and the key); NaN becomes None."""
    results: dict[str, dict[str, float | None]] = {}
    for name, evaluator in evaluators:
        try:
            got: Any = evaluator.evaluate(run)
        except ValueError as exc:
            raise RunError(f"test.evaluators: {name!r} cannot measure this run: {exc}") from None
        if not isinstance(got, dict) or not all(isinstance(k, str) for k in got):
            raise RunError(f"test.evaluators: {name!r} returned {type(got).__name__}; expected a dict of named "
                           "numbers")
        values: dict[str, float | None] = {}
        for key, v in got.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                raise RunError(f"test.evaluators: {name!r} returned {key}={v!r}; expected a number or None")
            values[key] = None if v is None or not math.isfinite(float(v)) else float(v)
        results[name] = values
    return results
