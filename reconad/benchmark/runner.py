"""Running a suite's cells: each an ordinary run folder (``reconad.engine.run``) under ``OUT/cells/``, with a
cache entry next to each (``cells/<method>/<dataset>/<class>/seed<N>.json``); ``--resume`` skips the cells whose entry is finished with the same cache key, and
``--jobs N`` runs cells in N processes with the torch threads split between them. A cell whose test set has
ground-truth masks keeps its anomaly maps (``pixels.npz``) for the pixel metrics' intervals.

The cache key is a hash of the cell's resolved config (data, model, train, test and seed) and the versions of
reconad and of every installed plugin distribution: change any of them and the cell runs again.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..io import atomic_path, write_json
from .suite import METRICS, Cell, Suite, check_cells

__all__ = ["PIXELS", "BenchmarkError", "CellResult", "cache_key", "environment", "load_pixels", "machine_name",
           "run_cells", "save_pixels", "versions"]

PIXELS = "pixels.npz"     # a cell's test anomaly maps and masks (datasets with masks only)


class BenchmarkError(RuntimeError):
    """A benchmark cannot start or go on (an unreadable cache, an --out holding something else)."""


@dataclass
class CellResult:
    cell: Cell
    status: str                       # ok | error
    metrics: dict[str, Any]           # METRICS' values, "scorers": {name: image AUROC}, "evaluators", "epoch_kept"
    seconds: float
    cached: bool
    run_dir: str
    error: str = ""
    machine: str = ""                 # the CPU (or GPU) it trained on; "" in entries written before it was kept


def versions() -> dict[str, str]:
    """reconad's version and that of every distribution with a ``reconad`` entry point (the plugins)."""
    from .. import __version__

    out = {"reconad": __version__}
    for ep in importlib.metadata.entry_points(group="reconad"):
        if ep.dist is not None:
            out[ep.dist.name] = ep.dist.version
    return dict(sorted(out.items()))


def cache_key(resolved_config: dict[str, Any], versions_: dict[str, str]) -> str:
    blob = json.dumps({"config": resolved_config, "versions": versions_}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if head and dirty else "")


def environment(device: str, jobs: int, threads: int) -> dict[str, Any]:
    """What the figures were measured on: device, torch, commit, threads, versions."""
    import torch

    from ..engine.runtime import resolve_device

    dev = resolve_device(device)
    return {"device": str(dev), "device_name": machine_name(dev), "torch": torch.__version__,
            "cuda": torch.version.cuda, "commit": _commit(), "jobs": jobs, "threads_per_job": threads,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions()}


def machine_name(device: Any) -> str:
    """The GPU's name, or the CPU's model name (Linux's /proc/cpuinfo; else the platform's processor or
    machine): convolutions do not train bit-identically across CPU models, so each cell records its own."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_entry(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            entry = json.load(fh)
        if not isinstance(entry, dict) or "key" not in entry or "status" not in entry:
            raise ValueError("expected a mapping with 'key' and 'status'")
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"unreadable cache entry {path}: {exc}; delete it (that cell runs again) or pass "
                             "another --out") from None
    return entry


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The suite's metrics, every scorer's image AUROC under ``scorers`` (two-stage's decoders, OLED's parts), and
    where the run has them its ``evaluators``' numbers and the ``epoch_kept`` by ``train.select_every``."""
    scorers = {name: entry.get("image_auroc") for name, entry in (metrics.get("scorers") or {}).items()}
    kept = ((metrics.get("selection") or {}).get("best") or {}).get("epoch")
    return {**{k: metrics.get(k) for k in METRICS}, "scorers": scorers,
            **({"evaluators": metrics["evaluators"]} if metrics.get("evaluators") else {}),
            **({"epoch_kept": kept} if kept is not None else {})}


def save_pixels(run_dir: str, scores: Any, fpr_limit: float) -> bool:
    """Write the test set's anomaly maps (float32), masks (bit-packed) and image paths into
    ``run_dir/pixels.npz``, atomically; nothing when the set has no maps or no anomalous pixel. True if written."""
    if scores is None or scores.pixel is None or scores.masks is None or not scores.masks.any():
        return False
    masks = np.asarray(scores.masks, dtype=bool)
    with atomic_path(os.path.join(run_dir, PIXELS)) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, maps=np.asarray(scores.pixel, dtype=np.float32), masks=np.packbits(masks),
                            shape=np.array(masks.shape), paths=np.array(scores.paths), fpr_limit=float(fpr_limit))
    return True


def load_pixels(run_dir: str) -> tuple[list[str], np.ndarray, np.ndarray, float] | None:
    """``run_dir/pixels.npz`` as (paths, maps (N, H, W), masks (N, H, W) bool, fpr_limit), or None without one.
    A file that cannot be read raises ValueError naming it."""
    path = os.path.join(run_dir, PIXELS)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(v) for v in z["shape"])
            masks = np.unpackbits(z["masks"], count=int(np.prod(shape))).reshape(shape).astype(bool)
            maps, paths, limit = z["maps"], [str(p) for p in z["paths"]], float(z["fpr_limit"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if maps.shape != shape or len(paths) != shape[0]:
        raise ValueError(f"{path}: maps {maps.shape}, masks {shape} and {len(paths)} paths do not match")
    return paths, maps, masks, limit


def run_one(cell: Cell, out: str, key: str, threads: int | None = None) -> CellResult:
    """Train and test one cell into ``out/<cell.folder>``; an error is recorded, not raised (an interruption is
    raised: the benchmark stops and resumes later)."""
    import torch

    from ..config import load_config
    from ..engine import Interrupted, run
    from ..engine.progress import set_mode

    if threads:
        torch.set_num_threads(threads)
    folder = os.path.join(out, cell.folder)
    entry_path = folder + ".json"
    previous = _read_entry(entry_path)
    t0 = time.perf_counter()
    mode = set_mode("quiet")   # the benchmark prints one line per cell, not each cell's training and scoring
    try:
        cfg = load_config(cell.config, list(cell.overrides))
        # a cell killed mid-training left its checkpoint: continue it when it is the same cell
        resume = bool(previous and previous["key"] == key and os.path.exists(os.path.join(folder, "checkpoint.pt")))
        if not resume and os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "checkpoint.pt")):
            # the cell's own folder without a run to replace: one restored from an archive (its scores as
            # ranks) whose config has changed since, or a run that failed before its first checkpoint
            shutil.rmtree(folder)
        write_json(entry_path, {"key": key, "status": "running", "cell": cell.label})
        try:
            res = run(cfg, folder, resume=resume, overwrite=not resume, log=lambda s: None)
        except Interrupted:
            raise
        except Exception:   # noqa: BLE001 - a checkpoint that cannot be continued: start the cell again
            if not resume:
                raise
            res = run(cfg, folder, overwrite=True, log=lambda s: None)
        save_pixels(folder, res.scores, cfg.test.fpr_limit)
        result = CellResult(cell, "ok", _metrics(res.metrics or {}), time.perf_counter() - t0, False, folder,
                            machine=machine_name(next(res.train.model.parameters()).device))
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded in results.csv; the other cells go on
        detail = f"{type(exc).__name__}: {exc}"
        result = CellResult(cell, "error", dict.fromkeys(METRICS), time.perf_counter() - t0, False, folder,
                            detail.replace("\n", " | "))
    finally:
        set_mode(mode)
    write_json(entry_path, {"key": key, "status": result.status, "cell": cell.label, "metrics": result.metrics,
                            "seconds": result.seconds, "error": result.error, "machine": result.machine})
    return result


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _hms(seconds: float) -> str:
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


def _eta(done: list[float], remaining: int, jobs: int) -> str:
    if not done or remaining == 0:
        return "done" if remaining == 0 else "?"
    return _hms(sum(done) / len(done) * remaining / max(1, jobs))


def _line(result: CellResult, metric: str) -> str:
    if result.status != "ok":
        return f"FAILED: {result.error}"
    value = result.metrics.get(metric)
    return f"{metric} {value:.4f}" if isinstance(value, float) else "no metric"


def _expected_seconds(cell: Cell, ran: list[CellResult], cached: list[CellResult]) -> float:
    """How long ``cell`` should take: the median time of this session's finished cells of its method, else of
    its method's cached cells, else of every cell this session finished; 0 when nothing is known yet."""
    for times in ([r.seconds for r in ran if r.status == "ok" and r.cell.method == cell.method],
                  [r.seconds for r in cached if r.cell.method == cell.method and r.seconds > 0],
                  [r.seconds for r in ran if r.status == "ok"]):
        if times:
            return float(np.median(times))
    return 0.0


def _pool(jobs: int, threads: int) -> cf.Executor:
    return cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                  initargs=(threads,))


def run_cells(suite: Suite, cells: list[Cell], out: str, *, jobs: int = 1, resume: bool = False,
              selected: list[bool] | None = None, on_result: Callable[[CellResult], None] | None = None,
              time_limit: float | None = None, clock: Callable[[], float] = time.monotonic,
              log: Callable[[str], None] = print) -> tuple[list[CellResult], dict[str, Any]]:
    """Check the suite's cells, then run those not cached; one progress line per cell. Returns every cell's
    result (cached ones included, in the suite's order) and the session's speed. ``selected`` (one flag per
    cell): only those run; the others are returned when their cache entry is finished and left out when not,
    so a suite run in parts summarises everything finished so far. ``on_result``: called with each cell this
    session runs, as it finishes. ``time_limit`` (seconds from the first cell on, by ``clock``): a cell starts
    only when its expected time (``_expected_seconds``) ends within it; a running cell is never stopped, and
    the cells not started are left for ``resume``."""
    from ..config import load_config, to_dict

    if jobs < 1:
        raise BenchmarkError(f"--jobs: expected at least 1, got {jobs}")
    if time_limit is not None and not time_limit > 0:
        raise BenchmarkError(f"--time-limit: expected a positive duration, got {time_limit} s")
    cells_dir = os.path.join(out, "cells")
    if os.path.isdir(cells_dir) and os.listdir(cells_dir) and not resume:
        raise BenchmarkError(f"--out {out!r} already holds a benchmark; pass --resume to continue it (finished "
                             "cells are skipped) or another --out")
    check_cells(suite, cells)
    ver = versions()
    keys = [cache_key(to_dict(load_config(c.config, list(c.overrides))), ver) for c in cells]
    entries = [_read_entry(os.path.join(out, c.folder) + ".json") for c in cells]   # all read before any runs
    results: dict[int, CellResult] = {}
    todo = []
    for i, (cell, key, entry) in enumerate(zip(cells, keys, entries)):
        if entry and entry["key"] == key and entry["status"] == "ok":
            results[i] = CellResult(cell, "ok", dict(entry.get("metrics") or {}),
                                    float(entry.get("seconds", 0.0)), True, os.path.join(out, cell.folder),
                                    machine=str(entry.get("machine") or ""))
        elif selected is None or selected[i]:
            todo.append(i)
    if results:
        log(f"{len(results)} of {len(cells)} cells finished before (cached), {len(todo)} to run")
    left = len(cells) - len(results) - len(todo)
    if left:
        log(f"{left} cell(s) of the suite {'not selected and ' if any(selected or []) else ''}not finished: left "
            "out of the summary")
    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    cached = list(results.values())
    ran: list[CellResult] = []
    pending, not_started = list(todo), []
    t0 = clock()

    def report(i: int, result: CellResult) -> None:
        results[i] = result
        ran.append(result)
        n, total = len(ran), len(todo) - len(not_started)
        log(f"[{n}/{total}] {result.cell.label}: {_line(result, suite.metric)} ({result.seconds:.0f} s); "
            f"ETA {_eta([r.seconds for r in ran], total - n, jobs)}")
        if on_result is not None:
            on_result(result)

    def next_cell() -> int | None:
        """The next cell to start; with a time limit, those expected to end past it are passed over."""
        while pending:
            i = pending.pop(0)
            if time_limit is None or clock() - t0 + _expected_seconds(cells[i], ran, cached) <= time_limit:
                return i
            not_started.append(i)
        return None

    if jobs == 1:
        while (i := next_cell()) is not None:
            report(i, run_one(cells[i], out, keys[i]))
    else:
        with _pool(jobs, threads) as pool:
            running: dict[cf.Future, int] = {}
            while True:
                while len(running) < jobs and (i := next_cell()) is not None:
                    running[pool.submit(run_one, cells[i], out, keys[i], threads)] = i
                if not running:
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    report(running.pop(fut), fut.result())
    wall = clock() - t0
    if not_started:
        log(f"--time-limit {_hms(time_limit or 0)}: {len(not_started)} cell(s) not started, each expected to end "
            "past it; --resume goes on with them")
    speed = {"cells_run": len(ran), "wall_seconds": wall, "jobs": jobs, "threads_per_job": threads,
             "cells_per_hour": len(ran) / wall * 3600 if ran and wall > 0 else None}
    speed["cells_left"] = left + len(not_started)
    speed["not_started"] = len(not_started)
    return [results[i] for i in range(len(cells)) if i in results], speed

