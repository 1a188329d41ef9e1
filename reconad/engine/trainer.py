"""Training: optimiser from config, epochs or steps, seeding, mixed precision, atomic checkpoints (every
``train.checkpoint_minutes``, every ``train.checkpoint_every`` steps, on SIGINT/SIGTERM and at the end), exact
resume, and DistributedDataParallel under torchrun."""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..components import Objective, StepContext
from ..config import Config, TrainConfig, to_dict
from ..data.base import DatasetSplits
from ..metrics import auroc
from ..model import ReconModel, build_model, nearest_size
from ..registry import Registry
from .checkpoint import check_compatible, load_checkpoint, model_signature, save_checkpoint
from .evaluate import calibrate, check_finite, fit_references, fixed_thresholds, score_dataset
from .evaluators import build_evaluators
from .history import History, LogRun, build_loggers
from .progress import TrainProgress, length_line, say
from .runtime import RunError, Runtime, flush_denormals, seed_everything

__all__ = ["Interrupted", "TrainResult", "build_data", "epoch_batches", "make_optimizer_factory", "prepare_data",
           "train"]

CHECKPOINT = "checkpoint.pt"


class Interrupted(RunError):
    """Training stopped on SIGINT / SIGTERM after finishing its step and writing the checkpoint; ``--resume``
    continues it. ``signum`` is the signal, ``step`` / ``total`` where it stopped."""

    def __init__(self, signum: int, step: int, total: int, checkpoint: str) -> None:
        self.signum, self.step, self.total, self.checkpoint = signum, step, total, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}/{total}; "
                         f"checkpoint written to {checkpoint}")


class _StopSignals:
    """While training: the first SIGINT / SIGTERM asks the loop to stop after its step (it then writes the
    checkpoint); a second SIGINT stops at once. Only the main thread can take signals; elsewhere this is a no-op."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum   # no printing here: the loop may be inside a print of its own (reentrant write)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


@dataclass
class TrainResult:
    model: ReconModel
    objective: Objective
    splits: DatasetSplits
    step: int
    checkpoint: str
    calibration: dict[str, Any]
    seconds: float
    selection: dict[str, Any] | None = None   # train.select_every: the history and the epoch kept


def build_data(cfg: Config, registry: Registry) -> DatasetSplits:
    splits = registry.get("dataset", cfg.data.name).factory(cfg.data, **cfg.data_options)
    if len(splits.train) == 0:
        raise RunError(f"dataset {cfg.data.name!r} has no training images (data.root={cfg.data.root!r})")
    return splits


def prepare_data(cfg: Config, registry: Registry, log: Callable[[str], None] = say) -> DatasetSplits:
    """The run's data at the size the model takes, said once: ``data.image_size: null`` is the training images'
    own size (or the nearest size the model builds for); a size that resizes images of one own size says so.
    ``cfg.data.image_size`` is set to the size used (config.yaml and the checkpoint record it)."""
    splits = build_data(cfg, registry)
    asked, own, size = cfg.data.image_size, splits.own_size, splits.image_size
    if asked is None:
        fitted = nearest_size(cfg.model, registry, splits.channels, size)
        if fitted != size:
            log(f"data.image_size: the model does not take {size}x{size} inputs; using {fitted}x{fitted}, the "
                "nearest size it takes (set data.image_size to choose)")
            cfg.data.image_size = fitted
            return build_data(cfg, registry)
        log(f"data.image_size: {size}, the training images' own size" if own == size else
            f"data.image_size: {size} (the training images have no one square size; set data.image_size)")
    elif own is not None and own != asked:
        log(f"data.image_size: {asked} resizes the {own}x{own} training images (null keeps their own size)")
    cfg.data.image_size = size
    return splits


def check_selectable(cfg: Config, splits: DatasetSplits, what: str, instead: str) -> None:
    """The setting ``what`` (``train.select_every=N``, ``test.threshold=f1``) needs the dataset's labelled
    validation split with normal and anomalous images; ``instead`` says what to do without one."""
    val = splits.validation
    if val is None:
        raise RunError(f"{what}: dataset {cfg.data.name!r} gives no labelled validation split (digits: set "
                       f"data.validation_normals and data.validation_anomalies_per_class); or {instead}")
    labels = _labels(val)
    if labels != {0, 1}:
        raise RunError(f"{what}: dataset {cfg.data.name!r}'s validation split needs normal and anomalous "
                       f"images, it has labels {sorted(labels)}")


class _Selection:
    """Model selection on the labelled validation split (``train.select_every`` epochs): every so many epochs the
    image AUROC of the primary score is measured; the best model (the earliest on ties) is kept in memory and in
    the checkpoint, and restored when training ends. Scoring runs under a forked RNG, so training is the same
    with or without it."""

    def __init__(self, every_epochs: int, state: dict[str, Any] | None) -> None:
        self.every = every_epochs
        state = state or {}
        self.history: list[dict[str, Any]] = list(state.get("history", []))
        self.best: dict[str, Any] | None = state.get("best")
        self.best_model: dict[str, torch.Tensor] | None = state.get("best_model")

    def due(self, step: int, steps_per_epoch: int, total: int) -> bool:
        return bool(self.every) and (step % (self.every * steps_per_epoch) == 0 or step == total)

    def score(self, model: ReconModel, dataset: Any, device: torch.device, batch_size: int, step: int,
              epoch: int) -> dict[str, Any]:
        point = validation_point(model, dataset, device, batch_size, step, epoch)
        self.history.append(point)
        if not math.isfinite(point["validation_auroc"]):   # e.g. constant scores: never kept
            return point
        if self.best is None or point["validation_auroc"] > self.best["validation_auroc"]:
            self.best = point
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return point

    def state(self, finished: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"every_epochs": self.every, "history": self.history, "best": self.best}
        if not finished:
            out["best_model"] = self.best_model
        return out


def validation_point(model: ReconModel, dataset: Any, device: torch.device, batch_size: int, step: int,
                     epoch: int) -> dict[str, Any]:
    """The image AUROC of the primary score on the labelled validation split, under a forked RNG (training is
    the same with or without it)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        s = score_dataset(model, dataset, device, batch_size, keep_maps=False, keep_masks=False,
                          where="validation images")
    return {"epoch": epoch, "step": step, "score": s.names[0],
            "validation_auroc": float(auroc(s.image[s.names[0]], s.labels))}


def _labels(dataset: Any) -> set[int]:
    """The labels a (validation) split holds; none without one."""
    if dataset is None:
        return set()
    return set(getattr(dataset, "labels", None) or (int(dataset[i]["label"]) for i in range(len(dataset))))


def _ignore_sigint(worker_id: int) -> None:
    """Loader workers leave Ctrl-C (sent to the whole process group) to the main process, which finishes its
    step and writes the checkpoint; a worker that died of it would end the run with a loader error instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_optimizer_factory(train: TrainConfig) -> Callable[..., torch.optim.Optimizer]:
    """``make(params, **overrides)``: the optimiser ``train.optimizer`` names, with the config's settings."""
    def make(params: Any, **overrides: Any) -> torch.optim.Optimizer:
        kw: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
        if train.optimizer in ("adam", "adamw"):
            kw["betas"] = tuple(train.betas)
            cls = torch.optim.Adam if train.optimizer == "adam" else torch.optim.AdamW
        else:
            kw["momentum"] = train.momentum
            cls = torch.optim.SGD
        kw.update(overrides)
        return cls(params, **kw)

    return make


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch): resuming mid-epoch replays the same order.

    Full batches only (the last partial one is dropped, unless it is the only one); under torchrun each
    process takes a strided share of every global batch, so N processes see what one process would.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    bs = min(batch_size, n)
    batches = [perm[i * bs:(i + 1) * bs] for i in range(n // bs)]
    return [b[rank::world] for b in batches]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(cfg: Config, out_dir: str, runtime: Runtime, registry: Registry, *, resume: bool = False,
          stop_after_steps: int | None = None, log: Callable[[str], None] = say,
          splits: DatasetSplits | None = None) -> TrainResult:
    """Train ``cfg`` into ``out_dir`` (checkpoint.pt there), resuming from it when ``resume``.

    ``splits``: data built by the caller (``reconad.Detector`` on in-memory images) instead of ``cfg.data``'s
    dataset.
    ``stop_after_steps`` ends this call early (after a checkpoint), as an interruption would; for tests.
    """
    t0 = time.perf_counter()
    loggers = build_loggers(cfg.train.loggers, registry) if runtime.is_main else []   # unknown names: before data
    seed_everything(cfg.seed)
    splits = prepare_data(cfg, registry, log) if splits is None else splits
    if cfg.train.select_every:
        check_selectable(cfg, splits, f"train.select_every={cfg.train.select_every}",
                         "set train.select_every=0 to keep the last model")
    if cfg.test.threshold == "f1":
        check_selectable(cfg, splits, "test.threshold=f1", "use test.threshold=quantile or conformal")
    model, objective = build_model(cfg.model, registry, splits.channels, splits.image_size)
    build_evaluators(cfg, registry, model)   # test.evaluators that cannot measure this model: before training
    device = runtime.device
    model.to(device)
    resolved = to_dict(cfg)
    signature = model_signature(resolved, splits.channels, splits.image_size)
    train_model: torch.nn.Module = model
    if runtime.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizers = objective.configure_optimizers(model, make_optimizer_factory(cfg.train))
    tc = cfg.train
    ctx = StepContext(train_model, optimizers, device, amp=tc.amp, grad_clip=tc.grad_clip)

    n = len(splits.train)
    batch = min(tc.batch_size, n)  # the global batch; each process takes 1/world_size of it
    if runtime.distributed and batch < runtime.world_size:
        raise RunError(f"train.batch_size {tc.batch_size} is smaller than the {runtime.world_size} processes")
    steps_per_epoch = n // batch
    total = tc.steps if tc.steps is not None else tc.epochs * steps_per_epoch
    ctx.steps_per_epoch, ctx.total_steps = steps_per_epoch, total
    try:
        objective.check_schedule(steps_per_epoch, total)
    except ValueError as exc:   # before any step: one line, not a traceback from the middle of training
        raise RunError(f"model.objective: {exc}") from None

    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    step = 0
    selection = _Selection(tc.select_every, None)
    state: dict[str, Any] = {}
    if resume:
        if not os.path.isfile(ckpt_path):
            raise RunError(f"--resume: no checkpoint to resume from in {out_dir!r} (expected {CHECKPOINT}); the run "
                           f"wrote none before it stopped: train.checkpoint_minutes (now {tc.checkpoint_minutes}) "
                           f"and train.checkpoint_every (now {tc.checkpoint_every}) set how often it writes one")
        state = load_checkpoint(ckpt_path, map_location=device)
        check_compatible(state, signature, ckpt_path)
        model.load_state_dict(state["model"])
        for opt, s in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        ctx.scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state.get("objective", {}))
        _set_rng_state(state["rng"])
        selection = _Selection(tc.select_every, state.get("selection"))
        step = int(state["step"])
        log(f"resumed from {ckpt_path} at step {step}/{total}")
    else:
        torch.manual_seed(cfg.seed + 1 + runtime.rank)  # the training RNG (maskers, sampling), per process

    def save(finished: bool, calibration: dict[str, Any] | None = None) -> None:
        if not runtime.is_main:
            return
        save_checkpoint(ckpt_path, {
            "config": resolved, "signature": signature, "model": model.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers], "scaler": ctx.scaler.state_dict(),
            "objective": objective.state_dict(), "rng": _rng_state(), "step": step,
            "finished": finished, "calibration": calibration,
            **({"selection": selection.state(finished)} if selection.every else {}), "history": history.state(),
        })

    history = History(loggers, tc.log_every_steps, steps_per_epoch, optimizers, state.get("history"))
    history.start(LogRun(out_dir, resolved, step if resume else None))   # unwritable: before training
    validating = runtime.is_main and not selection.every and _labels(splits.validation) == {0, 1}
    bar = TrainProgress(cfg.name, total, steps_per_epoch, step, objective, enabled=tc.progress and runtime.is_main)
    stop_at = total if stop_after_steps is None else min(total, step + stop_after_steps)
    every_s, last_save = tc.checkpoint_minutes * 60.0, time.monotonic()
    model.train()
    stops = _StopSignals().__enter__()   # before the line that says so
    denormals = flush_denormals(device)
    denormals.__enter__()
    try:
        if runtime.is_main and step < stop_at:
            log(length_line(total, steps_per_epoch, batch))
            log(f"training steps {step}..{total} of {cfg.name}; checkpoint {ckpt_path} "
                + (f"every {tc.checkpoint_minutes:g} min, " if every_s else "")
                + (f"every {tc.checkpoint_every} steps, " if tc.checkpoint_every else "")
                + "on Ctrl-C / SIGTERM and at the end")
        while step < stop_at:
            epoch, first = divmod(step, steps_per_epoch)
            batches = epoch_batches(n, tc.batch_size, cfg.seed, epoch, runtime.rank, runtime.world_size)
            remaining = batches[first:first + (stop_at - step)]
            # its own generator: a loader must not draw from the global RNG, or a resumed run would diverge
            loader = DataLoader(splits.train, batch_sampler=remaining, num_workers=tc.num_workers,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch),
                                worker_init_fn=_ignore_sigint if tc.num_workers else None)
            for batch in loader:
                check_finite(batch["image"], list(batch["path"]), f"training batch at step {step}")
                batch["image"] = batch["image"].to(device, non_blocking=True)
                ctx.step_index, ctx.epoch = step, epoch
                logs = objective.training_step(ctx, batch)
                loss = logs.get("loss", float("nan"))
                if not math.isfinite(loss):
                    raise RunError(f"the loss became {loss} at step {step} (epoch {epoch}): "
                                   f"{', '.join(f'{k}={v:.4g}' for k, v in logs.items())}; lower train.lr "
                                   f"(now {tc.lr}) or set train.grad_clip")
                step += 1
                stage = objective.stage(step - 1, steps_per_epoch)
                history.step(step, stage, logs, batch["image"].shape[0] * runtime.world_size)
                bar.update(step, logs, batch["image"].shape[0] * runtime.world_size)
                if selection.due(step, steps_per_epoch, total) and runtime.is_main:
                    p = selection.score(model, splits.validation, device, cfg.test.batch_size, step,
                                        step // steps_per_epoch)
                    log(f"epoch {p['epoch']}: validation AUROC {p['validation_auroc']:.4f} ({p['score']})")
                    history.validation(step, stage, {"auroc": p["validation_auroc"]})
                elif validating and (step % steps_per_epoch == 0 or step == total):
                    p = validation_point(model, splits.validation, device, cfg.test.batch_size, step, 0)
                    history.validation(step, stage, {"auroc": p["validation_auroc"]})
                if stops.signum is not None and step < total:
                    log(f"{signal.Signals(stops.signum).name}: step {step} done, writing the checkpoint")
                    save(False)
                    raise Interrupted(stops.signum, step, total, ckpt_path)
                if step < total and ((tc.checkpoint_every and step % tc.checkpoint_every == 0)
                                     or (every_s and time.monotonic() - last_save >= every_s)):
                    save(False)
                    last_save = time.monotonic()
        if step >= total:
            history.finish(step)
    finally:
        denormals.__exit__(None, None, None)
        stops.__exit__()
        bar.close()
        history.close()

    calibration: dict[str, Any] = {}
    if step >= total:
        if runtime.is_main and selection.best_model is not None:   # None: resumed after the end, already kept
            model.load_state_dict(selection.best_model)
            log(f"selected epoch {selection.best['epoch']} of {step // steps_per_epoch}: validation AUROC "
                f"{selection.best['validation_auroc']:.4f}")
        if runtime.is_main:
            fit_references(model, splits.holdout, device, cfg.test.batch_size)   # scales some scorers keep
            holdout = score_dataset(model, splits.holdout, device, cfg.test.batch_size, keep_masks=False,
                                    where="held-out normal images")
            validation = (score_dataset(model, splits.validation, device, cfg.test.batch_size, keep_masks=False,
                                        where="validation images") if cfg.test.threshold == "f1" else None)
            calibration = calibrate(holdout, cfg.test.threshold_quantile, fixed_thresholds(model),
                                    rule=cfg.test.threshold, alpha=cfg.test.alpha, validation=validation,
                                    pixel_rule=cfg.test.pixel_threshold, min_area=cfg.test.min_area)
        save(True, calibration)
    else:
        save(False)
    runtime.barrier()
    return TrainResult(model, objective, splits, step, ckpt_path, calibration, time.perf_counter() - t0,
                       selection.state(True) if selection.every else None)
