"""The engine: train, test and predict from a validated config, writing a run folder.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt``, ``metrics.json``,
``scores.csv``, ``grid.png``, ``roc.png`` (``pro.png`` with masks) and ``report.html``. Every file is
written atomically; a run that fails before writing anything leaves no folder behind.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
import yaml

from ..config import Config, to_dict, validate
from ..io import write_text
from ..plugins import get_registry
from ..registry import Registry
from .checkpoint import CheckpointError, load_checkpoint
from .evaluate import compute_metrics, score_dataset
# imported here, before ``def predict`` below: importing the submodule later (e.g. inside the function) would
# rebind ``reconad.engine.predict`` to the module and shadow the function for every later caller
from .predict import predict_images
from .report import write_report
from .runtime import RunError, resolve_device, setup_runtime
from .trainer import TrainResult, build_data, train

__all__ = ["CheckpointError", "RunError", "RunResult", "Trained", "default_out_dir", "evaluate_checkpoint",
           "load_trained", "predict", "run"]


@dataclass
class RunResult:
    out_dir: str
    metrics: dict[str, Any] | None
    files: dict[str, str]
    train: TrainResult | None = None


def default_out_dir(name: str) -> str:
    return os.path.join("runs", f"{name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


class _OutDir:
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


def _evaluate(out_dir: str, cfg: Config, model: torch.nn.Module, splits: Any, calibration: dict[str, Any],
              device: torch.device, selection: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    test = score_dataset(model, splits.test, device, cfg.test.batch_size, where="test images")
    metrics = compute_metrics(test, calibration, cfg.test.fpr_limit)
    if selection:
        metrics["selection"] = {k: selection[k] for k in ("every_epochs", "best", "history")}
    files = write_report(out_dir, model=model, dataset=splits.test, scores=test, metrics=metrics,
                         calibration=calibration, config=to_dict(cfg), device=device,
                         n_images=cfg.test.report_images)
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
    with _OutDir(out_dir):
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
            metrics, more = _evaluate(out_dir, cfg, result.model, result.splits, result.calibration, runtime.device,
                                      result.selection)
            files.update(more)
        runtime.barrier()
    return RunResult(out_dir, metrics, files, result)


class Trained(NamedTuple):
    """A finished run's checkpoint, loaded: its validated config, the model (eval mode, on the device), the
    calibration (thresholds from held-out normals), the data signature (``channels``, ``image_size``) and, for a
    run with ``train.select_every``, the model selection (``every_epochs``, ``best``, ``history``)."""

    config: Config
    model: Any
    calibration: dict[str, Any]
    signature: dict[str, Any]
    selection: dict[str, Any] | None = None


def load_trained(checkpoint: str, device: str | torch.device = "auto", registry: Registry | None = None) -> Trained:
    """Load a finished run (``checkpoint.pt`` or its run folder) for scoring, as ``reconad test`` does:
    ``weights_only`` loading, the config re-validated against the installed plugins."""
    from ..model import build_model

    registry = registry or get_registry()
    device = resolve_device(device, 0) if isinstance(device, str) else device

    state = load_checkpoint(checkpoint, map_location=device)
    if not state.get("finished") or not state.get("calibration"):
        raise CheckpointError(f"checkpoint {checkpoint!r} is from an unfinished run (step {state.get('step')}); "
                              f"finish it with `reconad train CONFIG --out DIR --resume`")
    cfg = validate(state["config"], registry)
    sig = state["signature"]
    model, _ = build_model(cfg.model, registry, sig["channels"], sig["image_size"])
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Trained(cfg, model, state["calibration"], sig, state.get("selection"))



def evaluate_checkpoint(checkpoint: str, out_dir: str | None = None, *, device: str = "auto",
                    registry: Registry | None = None, overrides: dict[str, Any] | None = None) -> RunResult:
    """Score the test split of a trained checkpoint's dataset and write metrics and the report."""
    registry = registry or get_registry()
    dev = setup_runtime(device).device
    trained = load_trained(checkpoint, dev, registry)
    cfg = trained.config
    out_dir = out_dir or (checkpoint if os.path.isdir(checkpoint) else os.path.dirname(os.path.abspath(checkpoint)))
    splits = build_data(cfg, registry)
    with _OutDir(out_dir):
        metrics, files = _evaluate(out_dir, cfg, trained.model, splits, trained.calibration, dev, trained.selection)
    return RunResult(out_dir, metrics, files)


def predict(checkpoint: str, images: list[str], out_dir: str, *, device: str = "auto", skip_bad: bool = False,
            registry: Registry | None = None, batch_size: int = 32) -> RunResult:
    """Score image files / folders with a trained checkpoint: ``scores.csv`` and ``heatmaps/*.png`` overlays."""

    registry = registry or get_registry()
    dev = setup_runtime(device).device
    trained = load_trained(checkpoint, dev, registry)
    sig = trained.signature
    with _OutDir(out_dir):
        files = predict_images(trained.model, images, out_dir, channels=sig["channels"], image_size=sig["image_size"],
                               calibration=trained.calibration, device=dev, skip_bad=skip_bad, batch_size=batch_size)
    return RunResult(out_dir, None, files)
