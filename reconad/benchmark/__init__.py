"""``reconad benchmark SUITE.yaml --out DIR``: every method of a suite on every dataset, class and seed, each
cell an ordinary run folder, with a summary that says how far apart methods are beyond noise.

``suite.py`` reads and checks a suite, ``runner.py`` runs its cells (cached, resumable, in parallel processes),
``stats.py`` holds the AUROC and bootstrap, ``summary.py`` writes results.csv, summary.md, summary.png and
environment.json. See docs/benchmarks.md.
"""
from __future__ import annotations

import os
import shlex

from typing import Callable

from .runner import BenchmarkError, CellResult, run_cells
from .suite import Cell, Suite, SuiteError, load_suite

__all__ = ["BenchmarkError", "Cell", "CellResult", "Suite", "SuiteError", "load_suite", "run_benchmark"]


def run_benchmark(suite_path: str, out: str, *, jobs: int = 1, resume: bool = False, quick: bool = False,
                  device: str | None = None, log: Callable[[str], None] = print) -> dict[str, str]:
    """Run (or resume) a suite into ``out`` and write its outputs; returns their paths by kind."""
    import torch

    from .runner import environment
    from .summary import write_outputs

    suite = load_suite(suite_path)
    cells = suite.cells(quick=quick, device=device)
    log(f"{suite.name}: {len(suite.methods)} method(s) x {len(suite.datasets)} dataset(s) -> {len(cells)} cells"
        f"{' (--quick)' if quick else ''}")
    results, speed = run_cells(suite, cells, out, jobs=jobs, resume=resume, log=log)
    env = environment(device or "auto", jobs, speed["threads_per_job"] if jobs > 1 else torch.get_num_threads())
    command = shlex.join(["reconad", "benchmark", os.path.relpath(suite_path), "--out", out, "--jobs", str(jobs),
                          *(["--quick"] if quick else []), *(["--device", device] if device else []), "--resume"])
    files = write_outputs(out, suite, results, speed, command, env)
    failed = sum(r.status != "ok" for r in results)
    log(f"{len(results) - failed} of {len(results)} cells finished" + (f", {failed} failed (see results.csv)"
                                                                       if failed else ""))
    return files



