"""A run: train a validated config into a run folder, then test it and write the report.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt``, ``history.csv`` (the training
history), ``metrics.json``, ``scores.csv``, ``grid.png``, ``roc.png`` (``pro.png`` with masks), ``curves.png`` and
``report.html``. Every file is
written atomically; a run that fails before writing anything leaves no folder behind, and a new run never
writes into a folder that holds another run (``--resume`` continues it, ``--overwrite`` replaces it).
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import torch
import yaml

from ..components import EvalRun
from ..config import Config, to_dict
from ..io import write_text
from ..plugins import get_registry
from ..registry import Registry
from .evaluate import ScoreSet, compute_metrics, score_dataset
from .evaluators import build_evaluators, run_evaluators
from .history import HISTORY
from .report import write_report
from .checkpoint import CheckpointError, load_checkpoint
from .progress import say
from .runtime import RunError, apply_threads, setup_runtime
from .trainer import CHECKPOINT, TrainResult, prepare_data, train

__all__ = ["OutDir", "RunResult", "claim_out_dir", "default_out_dir", "run"]


@dataclass
class RunResult:
    out_dir: str
    metrics: dict[str, Any] | None
    files: dict[str, str]
    train: TrainResult | None = None
    scores: ScoreSet | None = None      # the test set's scores, labels and (where the scorer gives them) pixel maps


def default_out_dir(name: str) -> str:
    return os.path.join("runs", f"{name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


class OutDir:
    """Creates the output folder; removes it again if the run fails before anything was written to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.created = not os.path.exists(path)

    def __enter__(self) -> str:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create the output folder {self.path!r}: {exc.strerror or exc}; pass a "
                           f"writable --out") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunError(f"the output folder {self.path!r} is not writable; pass a writable --out")
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.created and os.path.isdir(self.path):
            leftovers = [f for f in os.listdir(self.path) if not f.startswith(".")]
            if not leftovers:
                shutil.rmtree(self.path, ignore_errors=True)


def claim_out_dir(out_dir: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """Check that a new run may write into ``out_dir``: a new or empty folder (or one a run left with only its
    config.yaml, having trained nothing) is free; a folder with a run is refused unless ``resume`` (continue it)
    or ``overwrite`` (it is removed first, so the new run's files never mix with the old one's); a folder
    with anything else is refused."""
    if resume:
        if not os.path.isdir(out_dir):
            raise RunError(f"--resume: the output folder {out_dir!r} does not exist; pass the --out of the run "
                           "to resume")
        return
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise RunError(f"--out {out_dir!r} is a file, not a folder; pass a new folder")
    entries = sorted(f for f in os.listdir(out_dir) if not f.startswith("."))
    if entries in ([], ["config.yaml"]):
        return
    if CHECKPOINT not in entries:
        raise RunError(f"--out {out_dir!r} is not empty and holds no reconad run ({', '.join(entries[:4])}"
                       f"{', ...' if len(entries) > 4 else ''}); pass a new or empty folder")
    if not overwrite:
        try:
            state = load_checkpoint(os.path.join(out_dir, CHECKPOINT))
            what = "a finished run" if state.get("finished") else f"an unfinished run (step {state.get('step')})"
        except CheckpointError:
            what = "a run"
        raise RunError(f"--out {out_dir!r} already holds {what}; pass --resume to continue it, --overwrite to "
                       "replace it, or another --out")
    # replace: move the old run aside in one rename, then delete it
    parent = os.path.dirname(os.path.abspath(out_dir))
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.replaced-", dir=parent)
    os.rename(out_dir, os.path.join(aside, "old"))
    shutil.rmtree(aside, ignore_errors=True)


def _in_root(path: str, root: str) -> str:
    """``path`` relative to the dataset root when it lies inside it, else as it is."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def _trained_anything(out_dir: str) -> bool:
    """A checkpoint or a row of history: what a failed run leaves to look at."""
    path = os.path.join(out_dir, HISTORY)
    if os.path.isfile(os.path.join(out_dir, CHECKPOINT)):
        return True
    try:
        with open(path, encoding="utf-8") as fh:
            return sum(1 for _ in zip(range(2), fh)) > 1
    except OSError:
        return False


def _clear(out_dir: str) -> None:
    for entry in os.listdir(out_dir):
        path = os.path.join(out_dir, entry)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def _write_config(out_dir: str, cfg: Config) -> None:
    write_text(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def evaluate_into(out_dir: str, cfg: Config, model: torch.nn.Module, splits: Any, calibration: dict[str, Any],
                  device: torch.device, selection: dict[str, Any] | None = None,
                  train_seconds: float | None = None,
                  registry: Registry | None = None) -> tuple[dict[str, Any], dict[str, str], ScoreSet]:
    """Score the test split, compute the metrics (and ``test.evaluators``') and write the report into
    ``out_dir``; returns the metrics, the files written and the test set's scores."""
    evaluators = build_evaluators(cfg, registry or get_registry(), model)   # before scoring: checked first
    test = score_dataset(model, splits.test, device, cfg.test.batch_size, where="test images")
    if cfg.data.root:   # name each image by its path in the dataset (test/scratch/006.png), not its file name
        test.paths = [_in_root(p, cfg.data.root) for p in test.paths]
    metrics = compute_metrics(test, calibration, cfg.test.fpr_limit)
    if selection:
        metrics["selection"] = {k: selection[k] for k in ("every_epochs", "best", "history")}
    if evaluators:
        model.eval()
        metrics["evaluators"] = run_evaluators(evaluators, EvalRun(model, splits, test, device, to_dict(cfg),
                                                                   cfg.test.batch_size))
    files = write_report(out_dir, model=model, dataset=splits.test, scores=test, metrics=metrics,
                         calibration=calibration, config=to_dict(cfg), device=device,
                         n_images=cfg.test.report_images, skipped=splits.skipped, train_seconds=train_seconds)
    return metrics, files, test


def run(cfg: Config, out_dir: str | None = None, *, test: bool = True, resume: bool = False,
        overwrite: bool = False, registry: Registry | None = None, stop_after_steps: int | None = None,
        log: Callable[[str], None] = say) -> RunResult:
    """Train ``cfg`` (resuming when asked), then test it and write the report (``test=False``: train only).
    ``out_dir`` must be new or empty unless ``resume`` or ``overwrite`` (see ``claim_out_dir``)."""
    registry = registry or get_registry()
    apply_threads(cfg.train.threads)
    runtime = setup_runtime(cfg.train.device)
    try:
        out_dir = out_dir or default_out_dir(cfg.name)
        if runtime.is_main:
            claim_out_dir(out_dir, resume=resume, overwrite=overwrite)
        runtime.barrier()
        splits = prepare_data(cfg, registry, log if runtime.is_main else lambda _: None)   # config.yaml: its size
        with OutDir(out_dir):
            if runtime.is_main and not resume:   # on resume, once the checkpoint proved to fit the config
                _write_config(out_dir, cfg)
            try:
                result = train(cfg, out_dir, runtime, registry, resume=resume, stop_after_steps=stop_after_steps,
                               log=log, splits=splits)
            except BaseException:
                if runtime.is_main and not resume and not _trained_anything(out_dir):
                    _clear(out_dir)   # nothing trained (the folder was free, see claim_out_dir): leave no folder
                raise
            if runtime.is_main and resume:
                _write_config(out_dir, cfg)
            metrics, files, scores = None, {"checkpoint": result.checkpoint}, None
            if test and runtime.is_main and result.calibration:
                metrics, more, scores = evaluate_into(out_dir, cfg, result.model, result.splits, result.calibration,
                                                  runtime.device, result.selection, result.seconds, registry)
                files.update(more)
            runtime.barrier()
    finally:
        runtime.close()
    return RunResult(out_dir, metrics, files, result, scores)
