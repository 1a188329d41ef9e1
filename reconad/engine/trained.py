"""A finished run, used: load it (``load_trained``), test it again (``evaluate_checkpoint``) or score new
images with it (``predict``)."""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import torch

from ..config import Config, validate_resolved
from ..plugins import get_registry
from ..registry import Registry
from .checkpoint import CheckpointError, check_config_file, check_weights, load_checkpoint
from .predict import predict_images
from .runs import OutDir, RunResult, evaluate_into
from .progress import say
from .runtime import local_device
from .trainer import build_data

__all__ = ["Trained", "evaluate_checkpoint", "load_trained", "predict", "run_folder"]


class Trained(NamedTuple):
    """A finished run's checkpoint, loaded: its validated config, the model (eval mode, on the device), the
    calibration (thresholds from held-out normals), the data signature (``channels``, ``image_size``) and, for a
    run with ``train.select_every``, the model selection (``every_epochs``, ``best``, ``history``)."""

    config: Config
    model: Any
    calibration: dict[str, Any]
    signature: dict[str, Any]
    selection: dict[str, Any] | None = None


def run_folder(checkpoint: str) -> str:
    """The run folder of ``checkpoint`` (a run folder itself, or a ``checkpoint.pt`` in one)."""
    return checkpoint if os.path.isdir(checkpoint) else os.path.dirname(os.path.abspath(checkpoint))


def load_trained(checkpoint: str, device: str | torch.device = "auto", registry: Registry | None = None) -> Trained:
    """Load a finished run (``checkpoint.pt`` or its run folder) for scoring, as ``reconad test`` does:
    ``weights_only`` loading, the config re-validated against the installed plugins."""
    from ..model import build_model

    registry = registry or get_registry()
    device = local_device(device) if isinstance(device, str) else device

    state = load_checkpoint(checkpoint, map_location=device)
    if not state.get("finished") or not state.get("calibration"):
        raise CheckpointError(f"checkpoint {checkpoint!r} is from an unfinished run (step {state.get('step')}); "
                              f"finish it with `reconad train CONFIG --out DIR --resume`")
    config_file = os.path.join(run_folder(checkpoint), "config.yaml")
    if os.path.isfile(config_file):
        check_config_file(state, config_file, checkpoint)
    cfg = validate_resolved(state["config"], registry)
    sig = state["signature"]
    model, _ = build_model(cfg.model, registry, sig["channels"], sig["image_size"])
    check_weights(model, state["model"], checkpoint)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Trained(cfg, model, state["calibration"], sig, state.get("selection"))


def evaluate_checkpoint(checkpoint: str, out_dir: str | None = None, *, device: str = "auto",
                        registry: Registry | None = None) -> RunResult:
    """Score the test split of a trained checkpoint's dataset and write metrics and the report."""
    registry = registry or get_registry()
    dev = local_device(device)
    trained = load_trained(checkpoint, dev, registry)
    cfg = trained.config
    out_dir = out_dir or run_folder(checkpoint)
    splits = build_data(cfg, registry)
    with OutDir(out_dir):
        metrics, files, scores = evaluate_into(out_dir, cfg, trained.model, splits, trained.calibration, dev,
                                               trained.selection, registry=registry)
    return RunResult(out_dir, metrics, files, scores=scores)


def predict(checkpoint: str, images: list[str], out_dir: str, *, device: str = "auto", skip_bad: bool = False,
            registry: Registry | None = None, batch_size: int = 32, log: Callable[[str], None] = say,
            tile: int | None = None, overlap: float = 0.25) -> RunResult:
    """Score image files / folders with a trained checkpoint: ``scores.csv`` and ``heatmaps/*.png`` overlays
    at each image's own size (``tile``: scored in overlapping squares of that many pixels; see
    ``predict_images``)."""
    registry = registry or get_registry()
    dev = local_device(device)
    trained = load_trained(checkpoint, dev, registry)
    sig = trained.signature
    with OutDir(out_dir):
        files = predict_images(trained.model, images, out_dir, channels=sig["channels"], image_size=sig["image_size"],
                               calibration=trained.calibration, device=dev, skip_bad=skip_bad, batch_size=batch_size,
                               log=log, tile=tile, overlap=overlap)
    return RunResult(out_dir, None, files)
