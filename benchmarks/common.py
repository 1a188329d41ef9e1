"""Shared helpers for ``benchmarks/bm_*.py`` and the example plugin's
``examples/reconad-maskedmem/benchmarks/bm_maskedmem.py``: timing, peak memory, the printed table, RESULTS.md
rows, README results tables.

Each benchmark module defines ``main(argv: list[str] | None = None) -> list[dict]`` which prints its table
and returns its rows; ``benchmarks/run.py`` runs those in benchmarks/ (or the named ones), the example's script
runs on its own.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from typing import Callable, Iterable

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(_HERE, "RESULTS.md")
# benchmarks/gpu_check.py runs the benchmarks in a copy of the tree on another machine: it points the rows at its
# output folder (RECONAD_BENCH_RESULTS) and names the commit the copy was made from (RECONAD_COMMIT: no .git there)
RESULTS = os.environ.get("RECONAD_BENCH_RESULTS") or RESULTS


def device_name(device: str | torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def commit() -> str:
    if os.environ.get("RECONAD_COMMIT"):
        return os.environ["RECONAD_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=_HERE, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=_HERE, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def bench_device(name: str, threads: int) -> torch.device:
    """The benchmark's device; on the CPU, ``threads`` torch threads (the op issues' CPU goals are for 2)."""
    device = torch.device(name)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    return device


def pick_shapes(given: list[str] | None, device: torch.device, cpu: list[tuple[int, ...]],
                cuda: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """``--shape A,B,C`` values (repeatable) as tuples, else the device's default shapes."""
    if given:
        return [tuple(int(v) for v in s.split(",")) for s in given]
    return cuda if device.type == "cuda" else cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: str | torch.device = "cpu", *, warmup: int = 3,
            repeat: int = 20, min_time: float = 0.2) -> float:
    """Median time of ``fn()`` in seconds: GPU time on a GPU, wall time (perf_counter) on the CPU.

    On a GPU each sample replays a CUDA graph of back-to-back calls (enough to fill about a millisecond) between
    two events and divides, so a kernel of a few microseconds is timed as the GPU runs it, without the Python and
    launch overhead around each call; where ``fn`` cannot be captured in a graph (it synchronises, say), the
    calls are issued back to back instead."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type != "cuda":
        times: list[float] = []
        start_all = time.perf_counter()
        while len(times) < repeat or (time.perf_counter() - start_all < min_time and len(times) < 10 * repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def timed(run: Callable[[], object]) -> float:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / 1e3

    inner = max(1, min(200, int(1e-3 / max(timed(fn), 1e-7))))

    def loop() -> None:
        for _ in range(inner):
            fn()

    run = loop
    try:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            fn()  # warm-up on the side stream, as graph capture asks
        torch.cuda.current_stream(device).wait_stream(stream)
        with torch.cuda.graph(graph):
            loop()
        run = graph.replay
    except Exception:  # noqa: BLE001 - not capturable: time the calls as they are issued
        torch.cuda.synchronize(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start_all < min_time and len(times) < 10 * repeat):
        times.append(timed(run) / inner)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: str | torch.device) -> int | None:
    """Extra peak bytes allocated while running ``fn()`` on a CUDA device (None on the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def print_table(title: str, rows: list[dict], columns: Iterable[str] | None = None) -> None:
    if not rows:
        print(f"{title}: no rows")
        return
    cols = list(columns) if columns else list(rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def append_results(benchmark: str, device: str | torch.device, figures: str) -> None:
    """Append one row (date, benchmark, device, torch, commit, figures) to benchmarks/RESULTS.md."""
    header = "| date | benchmark | device | torch | commit | figures |\n|---|---|---|---|---|---|\n"
    new = not os.path.exists(RESULTS)
    row = (f"| {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} | {benchmark} | {device_name(device)} | "
           f"{torch.__version__} | {commit()} | {figures} |\n")
    with open(RESULTS, "a", encoding="utf-8") as fh:
        if new:
            fh.write("# Benchmark results\n\nOne row per run, appended by `benchmarks/run.py` "
                     "(or a single `benchmarks/bm_*.py`).\n\n" + header)
        fh.write(row)


def write_readme_section(path: str, section: str, start: str, end: str, heading: str = "## Results") -> None:
    """Put ``section`` (which begins with the ``start`` marker and ends with the ``end`` marker) in place of the
    text between those markers in ``path``, or append it under ``heading`` when the markers are missing;
    atomically. How each benchmark keeps its results table in a README current."""
    from reconad.io import write_text

    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + (heading + "\n\n" if heading else "") + section + "\n"
    write_text(path, text)
