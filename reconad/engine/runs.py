"""A run: train a validated config into a run folder, then test it and write the report.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt``, ``metrics.json``,
``scores.csv``, ``grid.png``, ``roc.png`` (``pro.png`` with masks) and ``report.html``. Every file is
written atomically; a run that fails before writing anything leaves no folder behind.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable

import torch
import yaml

from ..config import Config, to_dict
from ..io import write_text
from ..plugins import get_registry
from ..registry import Registry
from .evaluate import compute_metrics, score_dataset
from .report import write_report
from .runtime import RunError, setup_runtime
from .trainer import TrainResult, train

__all__ = ["RunResult", "default_out_dir", "run"]


@dataclass
class RunResult:
    out_dir: str
    metrics: dict[str, Any] | None
    files: dict[str, str]
    train: TrainResult | None = None


def default_out_dir(name: str) -> str:
    return os.path.join("runs", f"{name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


class OutDir:
    """Creates the output folder; removes it again if the run fails before anything was written to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.created = not os.path.exists(path)

    def __enter__(self) -> str:
        os.makedirs(self.path, exist_ok=True)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.created and os.path.isdir(self.path):
            leftovers = [f for f in os.listdir(self.path) if not f.startswith(".")]
            if not leftovers:
                shutil.rmtree(self.path, ignore_errors=True)


def _write_config(out_dir: str, cfg: Config) -> None:
    write_text(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def evaluate_into(out_dir: str, cfg: Config, model: torch.nn.Module, splits: Any, calibration: dict[str, Any],
                  device: torch.device, selection: dict[str, Any] | None = None,
                  train_seconds: float | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Score the test split, compute the metrics and write the report into ``out_dir``."""
    test = score_dataset(model, splits.test, device, cfg.test.batch_size, where="test images")
    metrics = compute_metrics(test, calibration, cfg.test.fpr_limit)
    if selection:
        metrics["selection"] = {k: selection[k] for k in ("every_epochs", "best", "history")}
    files = write_report(out_dir, model=model, dataset=splits.test, scores=test, metrics=metrics,
                         calibration=calibration, config=to_dict(cfg), device=device,
                         n_images=cfg.test.report_images, skipped=splits.skipped, train_seconds=train_seconds)
    return metrics, files


def run(cfg: Config, out_dir: str | None = None, *, test: bool = True, resume: bool = False,
        registry: Registry | None = None, stop_after_steps: int | None = None,
        log: Callable[[str], None] = print) -> RunResult:
    """Train ``cfg`` (resuming when asked), then test it and write the report (``test=False``: train only)."""
    registry = registry or get_registry()
    runtime = setup_runtime(cfg.train.device)
    out_dir = out_dir or default_out_dir(cfg.name)
    if resume and not os.path.isdir(out_dir):
        raise RunError(f"--resume: the output folder {out_dir!r} does not exist; pass the --out of the run to resume")
    with OutDir(out_dir):
        if runtime.is_main:
            _write_config(out_dir, cfg)
        try:
            result = train(cfg, out_dir, runtime, registry, resume=resume, stop_after_steps=stop_after_steps,
                           log=log)
        except BaseException:
            if runtime.is_main and not resume and os.listdir(out_dir) == ["config.yaml"]:
                os.unlink(os.path.join(out_dir, "config.yaml"))  # nothing trained: leave no folder
            raise
        metrics, files = None, {"checkpoint": result.checkpoint}
        if test and runtime.is_main and result.calibration:
            metrics, more = evaluate_into(out_dir, cfg, result.model, result.splits, result.calibration,
                                          runtime.device, result.selection, result.seconds)
            files.update(more)
        runtime.barrier()
    return RunResult(out_dir, metrics, files, result)
