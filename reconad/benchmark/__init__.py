"""``reconad benchmark SUITE.yaml --out DIR``: every method of a suite on every dataset, class and seed, each
cell an ordinary run folder, with a summary that says how far apart methods are beyond noise.

``suite.py`` reads and checks a suite, ``runner.py`` runs its cells (cached, resumable, in parallel processes),
``stats.py`` holds the AUROC and bootstrap, ``summary.py`` writes results.csv, summary.md, summary.png and
environment.json, ``archive.py`` keeps finished cells small enough to commit (``--archive``). See
docs/benchmarks.md.
"""
from __future__ import annotations

import os
import shlex

from typing import Callable

from .runner import BenchmarkError, CellResult, run_cells
from .suite import Cell, Suite, SuiteError, load_suite

__all__ = ["BenchmarkError", "Cell", "CellResult", "Suite", "SuiteError", "load_suite", "run_benchmark"]


def run_benchmark(suite_path: str, out: str, *, jobs: int = 1, resume: bool = False, quick: bool = False,
                  device: str | None = None, methods: list[str] | None = None, datasets: list[str] | None = None,
                  classes: list[str] | None = None, seeds: list[int] | None = None, readme: str | None = None,
                  baseline: str | None = None, archive: str | None = None, summary_only: bool = False,
                  time_limit: float | None = None, log: Callable[[str], None] = print) -> dict[str, str]:
    """Run (or resume) a suite into ``out`` and write its outputs; returns their paths by kind. ``methods``,
    ``datasets``, ``classes``, ``seeds``: run only those cells (the summary holds every finished cell).
    ``readme``: also write summary.md's tables into that README, between the suite's markers. ``baseline``:
    compare with this method instead of the suite's (the cells and their cache keys do not change).
    ``archive``: restore the finished cells kept there into ``out`` first (``resume`` is implied), and keep
    every finished cell there (``reconad.benchmark.archive``: small enough to commit). ``summary_only``: run no
    cell, write the outputs from the finished cells in ``out`` and the archive (``resume`` is implied; a
    selection is an error, as is nothing finished). ``time_limit`` (seconds): start no cell expected to end past
    it (``runner.run_cells``), then write the outputs; ``resume`` goes on with the rest."""
    import torch

    from .runner import environment
    from .suite import select, set_baseline
    from .summary import check_readme, write_outputs

    suite = load_suite(suite_path)
    if baseline is not None:
        set_baseline(suite, baseline)
    if readme:
        try:
            check_readme(readme, suite.name)
        except ValueError as exc:
            raise SuiteError(str(exc)) from None
    cells = suite.cells(quick=quick, device=device)
    chosen = {"--methods": methods, "--datasets": datasets, "--classes": classes,
              "--seeds": None if seeds is None else [str(s) for s in seeds]}
    selected = select(suite, cells, methods=methods, datasets=datasets, classes=classes, seeds=seeds)
    if summary_only:
        given = [k for k, v in chosen.items() if v is not None] + (["--time-limit"] if time_limit else [])
        if given:
            raise SuiteError(f"--summary-only runs no cell, so {', '.join(given)} (which choose the cells to run) "
                             "cannot go with it: the summary holds every finished cell")
        selected, resume = [False] * len(cells), True
    log(f"{suite.name}: {len(suite.methods)} method(s) x {len(suite.datasets)} dataset(s) -> {len(cells)} cells"
        f"{' (--quick)' if quick else ''}" + (f", {sum(selected)} selected" if not all(selected) else ""))
    keep, restored = None, 0
    if archive:
        from . import archive as arch

        try:
            restored = arch.restore(archive, out, cells)
        except ValueError as exc:
            raise BenchmarkError(str(exc)) from None
        if restored:
            log(f"{restored} finished cell(s) restored from the archive {archive} (their scores as ranks)")
        resume = True

        def keep(result: CellResult) -> None:
            if result.status == "ok":
                arch.save(archive, out, result)
    results, speed = run_cells(suite, cells, out, jobs=jobs, resume=resume, selected=selected, on_result=keep,
                               time_limit=time_limit, log=log)
    if summary_only and not results:
        why = (f"; the {restored} cell(s) restored from --archive {archive} are of other configs (a changed config, "
               "--device or --quick changes a cell's cache key)" if restored
               else f" nor in --archive {archive}" if archive else "")
        raise BenchmarkError(f"--summary-only: no finished cell of this suite in --out {out}{why}; nothing to "
                             "summarise")
    if keep is not None:
        for r in results:       # the cells finished before the archive was asked for, too
            keep(r)
        log(f"archive {archive}: holds the {sum(r.status == 'ok' for r in results)} finished cell(s) of this summary")
    env = environment(device or "auto", jobs, speed["threads_per_job"] if jobs > 1 else torch.get_num_threads())
    command = shlex.join(["reconad", "benchmark", os.path.relpath(suite_path), "--out", out, "--jobs", str(jobs),
                          *(["--quick"] if quick else []), *(["--device", device] if device else []),
                          *(a for k, v in chosen.items() if v is not None for a in (k, ",".join(v))),
                          "--summary-only" if summary_only else "--resume",
                          *(["--time-limit", f"{time_limit:g}s"] if time_limit else []),
                          *(["--baseline", baseline] if baseline is not None else []),
                          *(["--archive", os.path.relpath(archive)] if archive else []),
                          *(["--readme", os.path.relpath(readme)] if readme else [])])
    files = write_outputs(out, suite, results, speed, command, env, readme)
    failed = sum(r.status != "ok" for r in results)
    log(f"{len(results) - failed} of {len(results)} cells finished" + (f", {failed} failed (see results.csv)"
                                                                       if failed else ""))
    return files



