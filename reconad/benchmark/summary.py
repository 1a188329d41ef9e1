"""A benchmark's outputs: ``results.csv`` (one row per cell), ``summary.md`` (method x dataset: mean +- std over
seeds and the bootstrap interval; each method against the baseline, paired; each scorer's and each
``test.evaluators`` number; per-class means; the epochs a validation split kept; failed cells; cells/hour),
``summary.png`` (the same, plotted) and ``environment.json``. Every file is written atomically.
Intervals: image AUROC from each cell's ``scores.csv``; pixel AUROC and AUPRO from its ``pixels.npz``.
"""
from __future__ import annotations

import collections
import csv
import io
import os
from typing import Any, Callable

import numpy as np

from ..io import atomic_path, write_json, write_text
from .runner import CellResult, load_pixels
from .stats import Group, auroc_rows, bootstrap, interval, mean_std, pixel_stats
from .suite import METRICS, Suite

__all__ = ["Summary", "check_readme", "load_groups", "read_scores", "readme_block", "summarise", "write_outputs",
           "write_readme",
           "write_results_csv"]

COLUMNS = ["method", "dataset", "class", "seed", "status", *METRICS, "scorers", "evaluators", "epoch_kept", "seconds",
           "cached", "run_dir", "error"]


def write_results_csv(path: str, results: list[CellResult], out: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in results:
        w.writerow([r.cell.method, r.cell.dataset, "" if r.cell.cls is None else r.cell.cls, r.cell.seed, r.status,
                    *("" if r.metrics.get(k) is None else f"{r.metrics[k]:.6f}" for k in METRICS),
                    " ".join(f"{n}:{v:.6f}" for n, v in (r.metrics.get("scorers") or {}).items() if v is not None),
                    " ".join(f"{n}.{k}:{v:.6f}" for n, values in (r.metrics.get("evaluators") or {}).items()
                             for k, v in values.items() if v is not None),
                    r.metrics.get("epoch_kept", ""),
                    f"{r.seconds:.1f}", int(r.cached), os.path.relpath(r.run_dir, out), r.error])
    write_text(path, buf.getvalue())


def read_scores(run_dir: str) -> dict[str, tuple[float, int]]:
    """A run's test scores, path -> (score, label), from its scores.csv (rows without a label left out); a file
    without the path, score and label columns is a KeyError naming them, a bad row a ValueError naming its line."""
    path = os.path.join(run_dir, "scores.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        missing = [c for c in ("path", "score", "label") if c not in header]
        if missing:
            raise KeyError(f"{path}: no column(s) {', '.join(missing)} in its header {header}")
        ip, js, jl = header.index("path"), header.index("score"), header.index("label")
        try:
            return {row[ip]: (float(row[js]), int(row[jl])) for row in rows if row[jl] != ""}
        except IndexError:
            raise ValueError(f"{path}, line {rows.line_num}: too few columns (the header has {len(header)})") from None
        except ValueError as exc:
            raise ValueError(f"{path}, line {rows.line_num}: {exc}") from None


def load_groups(results: list[CellResult]) -> tuple[list[Group], list[str]]:
    """The finished cells' test scores (``scores.csv``), one :class:`Group` per dataset and class, the seeds of
    a method stacked; a cell whose test images differ from its group's first cell's is left out (noted). Where
    a cell kept its maps (``pixels.npz``), its :class:`PixelStats` in the images' order; maps whose masks differ
    from the group's are left out (noted)."""
    groups: dict[tuple[str, Any], Group] = {}
    order: dict[tuple[str, Any], list[str]] = {}
    seeds: dict[tuple[tuple[str, Any], str], list[np.ndarray]] = {}
    truth: dict[tuple[str, Any], np.ndarray] = {}
    notes: list[str] = []
    no_maps: dict[str, dict[str, list[int]]] = {}       # method -> dataset/class -> seeds without pixels.npz
    for r in results:
        if r.status != "ok":
            continue
        gkey = (r.cell.dataset, r.cell.cls)
        try:
            scores = read_scores(r.run_dir)
        except (OSError, KeyError, ValueError) as exc:
            notes.append(f"{r.cell.label}: scores.csv unreadable ({exc}); left out of the intervals")
            continue
        if gkey not in groups:
            order[gkey] = sorted(scores)
            groups[gkey] = Group(r.cell.group, np.array([scores[p][1] for p in order[gkey]]),
                                 dataset=r.cell.dataset)
        if sorted(scores) != order[gkey] or any(scores[p][1] != y for p, y in zip(order[gkey], groups[gkey].labels)):
            notes.append(f"{r.cell.label}: its test images or labels differ from the other runs of "
                         f"{groups[gkey].name}; left out of the intervals")
            continue
        seeds.setdefault((gkey, r.cell.method), []).append(np.array([scores[p][0] for p in order[gkey]]))
        stats = _pixel_stats(r, order[gkey], truth.get(gkey), notes, no_maps)
        if stats is not None:
            truth.setdefault(gkey, stats[1])
            groups[gkey].pixel.setdefault(r.cell.method, []).append(stats[0])
    for (gkey, method), rows in seeds.items():
        groups[gkey].runs[method] = np.stack(rows)
    for method, where in no_maps.items():       # one note a method: an archive restores every cell without maps
        n = sum(len(v) for v in where.values())
        cells = "; ".join(f"{g} seed{'s' * (len(v) > 1)} {', '.join(map(str, v))}" for g, v in where.items())
        notes.append(f"{method}: {n} cell{'s' * (n > 1)} without pixels.npz ({cells}): restored from an archive, or "
                     "run by an older reconad; left out of the pixel intervals")
    keep = [g for g in groups.values() if 0 < g.labels.sum() < len(g.labels)]
    return keep, notes


def _pixel_stats(r: CellResult, order: list[str], truth: np.ndarray | None, notes: list[str],
                 no_maps: dict[str, dict[str, list[int]]]) -> tuple[Any, np.ndarray] | None:
    """The cell's PixelStats from its pixels.npz, its images in ``order``, and its masks; None (noted where it
    matters; a cell without maps in ``no_maps``) when it has none, cannot be read, or its masks differ from
    ``truth`` (the group's, when known)."""
    if r.metrics.get("pixel_auroc") is None:
        return None
    try:
        got = load_pixels(r.run_dir)
    except ValueError as exc:
        notes.append(f"{r.cell.label}: {exc}; left out of the pixel intervals")
        return None
    if got is None:
        no_maps.setdefault(r.cell.method, {}).setdefault(r.cell.group, []).append(r.cell.seed)
        return None
    paths, maps, masks, limit = got
    where = {p: i for i, p in enumerate(paths)}
    if sorted(where) != order:
        notes.append(f"{r.cell.label}: pixels.npz holds other images than scores.csv; left out of the pixel "
                     "intervals")
        return None
    idx = np.array([where[p] for p in order])
    maps, masks = maps[idx], masks[idx]
    if truth is not None and (truth.shape != masks.shape or not np.array_equal(truth, masks)):
        notes.append(f"{r.cell.label}: its ground-truth masks differ from the other runs of its class; left out "
                     "of the pixel intervals")
        return None
    return pixel_stats(maps, masks, limit), masks


class Summary:
    """The numbers behind summary.md and the plot, per method and dataset."""

    def __init__(self, suite: Suite, results: list[CellResult], n_boot: int = 1000, seed: int = 0) -> None:
        self.suite, self.results = suite, results
        self.methods, self.datasets = list(suite.methods), list(suite.datasets)
        self.stats: dict[tuple[str, str, str], tuple[float, float, int]] = {}   # (method, dataset, metric)
        for m in self.methods:
            for d in self.datasets:
                for metric in METRICS:
                    st = self.seed_stats(m, d, lambda mt, k=metric: mt.get(k))
                    if st is not None:
                        self.stats[(m, d, metric)] = st
        self.ci: dict[tuple[str, str, str], tuple[float, float]] = {}              # (method, dataset, metric)
        self.paired: dict[tuple[str, str, str], tuple[float, float, float]] = {}
        self.notes: list[str] = []
        self._bootstrap(n_boot, seed)   # image AUROC's intervals, and the pixel metrics' where cells kept maps

    def _per_seed(self, method: str, dataset: str, value: Callable[[dict[str, Any]], Any], *,
                  every_class_gives: bool = True) -> list[float]:
        """Per seed, the mean over the dataset's classes of ``value(cell metrics)`` (None: the class gave none),
        for the seeds where every class finished and (``every_class_gives``) gave a number."""
        done: dict[int, int] = {}
        by_seed: dict[int, list[float]] = {}
        for r in self.results:
            c = r.cell
            if c.method != method or c.dataset != dataset or r.status != "ok":
                continue
            done[c.seed] = done.get(c.seed, 0) + 1
            v = value(r.metrics)
            if v is not None:
                by_seed.setdefault(c.seed, []).append(float(v))
        n = len(self.classes(dataset))
        return [float(np.mean(v)) for seed, v in by_seed.items()
                if done[seed] == n and (len(v) == n or not every_class_gives)]

    def seed_stats(self, method: str, dataset: str, value: Callable[[dict[str, Any]], Any], *,
                   every_class_gives: bool = True) -> tuple[float, float, int] | None:
        """Mean, std and number of :meth:`_per_seed`'s per-seed means; None where no seed counts yet."""
        per_seed = self._per_seed(method, dataset, value, every_class_gives=every_class_gives)
        return (*mean_std(per_seed), len(per_seed)) if per_seed else None

    def _bootstrap(self, n_boot: int, seed: int) -> None:
        groups, self.notes = load_groups(self.results)
        base = self.suite.baseline
        for metric, reps in bootstrap(groups, n_boot, seed).items():
            # An interval (and a paired difference) only where the method ran every class of the dataset and each
            # has replicates: one over some classes (the others not run yet, or restored without pixel maps) would
            # not bracket the mean over all.
            for d in self.datasets:
                rows = [i for i, g in enumerate(groups) if g.dataset == d]
                ran_all = {m for m in reps if rows and all(m in groups[i].runs for i in rows)}
                for m in self.methods:
                    if m in ran_all and not np.isnan(reps[m][rows]).any():
                        self.ci[(m, d, metric)] = interval(reps[m][rows].mean(0))
                if base is None or base not in reps:
                    continue
                for m in self.methods:
                    if m == base or not {m, base} <= ran_all:
                        continue
                    if not np.isnan(reps[m][rows]).any() and not np.isnan(reps[base][rows]).any():
                        diff = (reps[m][rows] - reps[base][rows]).mean(0)
                        point = float(np.mean([self._group_mean(groups[i], m, metric)
                                               - self._group_mean(groups[i], base, metric) for i in rows]))
                        self.paired[(m, d, metric)] = (point, *interval(diff))

    def _group_mean(self, group: Group, method: str, metric: str) -> float:
        """The method's metric on the group, the mean over its seeds: image AUROC from the scores the bootstrap
        resamples, the pixel metrics as the cells computed them (exact)."""
        if metric == "image_auroc":
            return float(auroc_rows(group.runs[method], group.labels).mean())
        return float(np.mean([r.metrics[metric] for r in self.results if r.status == "ok" and r.cell.method == method
                              and r.cell.group == group.name
                              and r.metrics.get(metric) is not None]))

    def classes(self, dataset: str) -> list[Any]:
        """The dataset's classes this benchmark ran (--quick runs the first only)."""
        return list(dict.fromkeys(r.cell.cls for r in self.results if r.cell.dataset == dataset))

    def cell(self, method: str, dataset: str, metric: str) -> str:
        ci = self.ci.get((method, dataset, metric))
        return self._mean_std(self.stats.get((method, dataset, metric))) + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci
                                                                             else "")

    def _mean_std(self, s: tuple[float, float, int] | None) -> str:
        if s is None:
            return "—"
        n_seeds = max((n for *_, n in self.stats.values()), default=0)
        return f"{s[0]:.4f}" + (" (1 seed)" if s[2] == 1 else f" ± {s[1]:.4f}" + (
            f" ({s[2]} seeds)" if s[2] < n_seeds else ""))    # a method run with fewer seeds says so

    def evaluators(self) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
        """``{(dataset, evaluator): {method: {key: "mean ± std"}}}``: each ``test.evaluators`` number, per seed the
        mean over the dataset's classes that gave it (``per_defect`` on digits has no key for the normal class's
        own digit), counted once every class of the seed finished; then mean and std over those seeds."""
        out: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        for d in self.datasets:
            given = [(n, list(values)) for r in self.results if r.cell.dataset == d and r.status == "ok"
                     for n, values in (r.metrics.get("evaluators") or {}).items()]
            found = []
            for name in dict.fromkeys(n for n, _ in given):
                # its keys in the order the cells give them; sorted where every cell gives them sorted
                # (per_defect on digits: class 0's list starts at digit_1, class 1's at digit_0)
                lists = [keys for n, keys in given if n == name]
                keys = list(dict.fromkeys(k for ks in lists for k in ks))
                found += [(name, k) for k in (sorted(keys) if all(ks == sorted(ks) for ks in lists) else keys)]
            for name, key in found:
                for m in self.methods:
                    st = self.seed_stats(m, d, lambda mt, n=name, k=key: ((mt.get("evaluators") or {}).get(n)
                                                                          or {}).get(k), every_class_gives=False)
                    if st is not None:
                        out.setdefault((d, name), {}).setdefault(m, {})[key] = self._mean_std(st)
        return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def summarise(s: Summary, speed: dict[str, Any], command: str, env: dict[str, Any]) -> str:
    suite, metric = s.suite, s.suite.metric
    n_seeds = len({r.cell.seed for r in s.results})
    lines = [f"# Benchmark {suite.name}", "", f"`{command}`", "",
             f"{env['device_name']} ({env['device']}), torch {env['torch']}, commit {env['commit']}, "
             f"{env['jobs']} job(s) x {env['threads_per_job']} thread(s).", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    if speed.get("cells_left"):
        lines += [f"**Partial**: {len(s.results)} of {len(s.results) + speed['cells_left']} cells of the suite; the "
                  f"other {speed['cells_left']} have not run yet (a selection: --methods, --datasets, --classes, "
                  "--seeds" + (f"; {speed['not_started']} not started within --time-limit" if speed.get("not_started")
                               else "") + "). A method's mean over a dataset needs every class of a seed; `—` where "
                  "not.", ""]
    explained = False
    for k in [metric, *(k for k in METRICS if k != metric and any(key[2] == k for key in s.stats))]:
        with_ci = any(key[2] == k for key in s.ci)
        lines += [f"## {k}: mean ± std over {n_seeds} seed(s)" + (" [95 % bootstrap interval]" if with_ci else ""),
                  ""]
        if k == metric:
            why = ("no class scored both normal and anomalous test images" if k == "image_auroc"
                   else "the cells kept no anomaly maps, pixels.npz")
            lines += ["Each seed's value is the mean over the dataset's classes" + (
                "; the interval resamples the test images (1000 stratified replicates, seeds pooled)." if with_ci
                else f" (no interval: {why})."), ""]
        lines += _table(["method", *s.datasets], [[m, *(s.cell(m, d, k) for d in s.datasets)] for m in s.methods])
        lines += [""]
        if suite.baseline and any(key[2] == k for key in s.paired):
            lines += [f"## Paired against the baseline `{suite.baseline}`: difference in {k} "
                      "[95 % bootstrap interval]", ""]
            if not explained:
                lines += ["The same resampled test images for both methods; an interval that excludes 0 is a "
                          "difference beyond the test set's noise.", ""]
                explained = True
            rows = [[m, *(_diff(s.paired.get((m, d, k))) for d in s.datasets)] for m in s.methods
                    if m != suite.baseline]
            lines += _table(["method", *s.datasets], rows) + [""]
    lines.pop()
    lines += _seed_table(s)
    lines += _per_scorer(s)
    lines += _evaluators(s)
    lines += _per_class(s)
    lines += _epochs_kept(s)
    failed = [r for r in s.results if r.status != "ok"]
    if failed:
        lines += ["", f"## Failed cells ({len(failed)})", ""] + [f"- {r.cell.label}: {r.error}" for r in failed]
    if s.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s.notes]
    machines = dict(collections.Counter(r.machine or "not recorded" for r in s.results if r.status == "ok"))
    if len(machines) > 1:
        trained_on = ", ".join(f"{m} ({n} cell{'s' * (n != 1)})" for m, n in machines.items())
        lines += ["", "## Machines", "", f"The cells trained on {trained_on}"
                  + ". Convolutions do not train bit-identically across CPU models (their kernels round "
                  "differently), so a cell run on another machine differs by about as much as another seed does; the "
                  "std over seeds covers it."]
    elif set(machines) - {"not recorded", env["device_name"]}:   # one machine, not this one: the header's is not it
        lines += ["", "## Machines", "", f"The cells trained on {next(iter(machines))}; this summary was written on "
                  f"{env['device_name']} from their scores."]
    cph = speed.get("cells_per_hour")
    lines += ["", "## Speed", "",
              f"This session ran {speed['cells_run']} cell(s) in {speed['wall_seconds'] / 60:.1f} min"
              + (f": {cph:.1f} cells/hour" if cph else "") + f" ({speed['jobs']} job(s) x "
              f"{speed['threads_per_job']} thread(s)); {sum(r.cached for r in s.results)} cell(s) came from the "
              f"cache. Training and testing time over all cells: {sum(r.seconds for r in s.results) / 3600:.2f} h.",
              *_cell_times(s), ""]
    return "\n".join(lines)


def _cell_times(s: Summary) -> list[str]:
    """Method x machine: the median time of a finished cell (training and testing) and how many cells it is
    over, to plan the cells still to run."""
    times: dict[str, dict[str, list[float]]] = {}
    for r in s.results:
        if r.status == "ok" and r.seconds > 0:
            times.setdefault(r.cell.method, {}).setdefault(r.machine or "not recorded", []).append(r.seconds)
    machines = list(dict.fromkeys(k for m in s.methods for k in times.get(m, {})))
    if not machines:
        return []
    rows = [[m, *(f"{np.median(times[m][k]):.0f} s ({len(times[m][k])})" if k in times.get(m, {}) else "—"
                  for k in machines)] for m in s.methods if m in times]
    return ["", "Median time of a cell (training and testing; cells counted):", "",
            *_table(["method", *machines], rows)]


def _diff(v: tuple[float, float, float] | None) -> str:
    return "—" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"


def _per_scorer(s: Summary) -> list[str]:
    """Methods with several scorers: each scorer's image AUROC, like the main table: per seed the mean over the
    dataset's classes, counted once every class of the seed finished; then mean ± std over those seeds."""
    rows = []
    for m in s.methods:
        names = list(dict.fromkeys(n for r in s.results if r.cell.method == m and r.status == "ok"
                                   for n in (r.metrics.get("scorers") or {})))
        for n in names if len(names) > 1 else []:
            vals = [s._mean_std(s.seed_stats(m, d, lambda mt, n=n: (mt.get("scorers") or {}).get(n)))
                    for d in s.datasets]
            rows.append([f"{m} / {n}", *vals])
    if not rows:
        return []
    return ["", "## image_auroc of each scorer (the first is the method's score): mean ± std over seeds of the mean "
            "over classes", "", *_table(["method / scorer", *s.datasets], rows)]


def _evaluators(s: Summary) -> list[str]:
    """Per dataset and ``test.evaluators`` entry: method x the evaluator's numbers."""
    out = []
    for (d, name), by_method in s.evaluators().items():
        keys = list(dict.fromkeys(k for values in by_method.values() for k in values))
        out += ["", f"## {name} on {d} (test.evaluators): mean ± std over seeds of the mean over classes", ""]
        out += _table(["method", *keys], [[m, *(v.get(k, "—") for k in keys)] for m, v in by_method.items()])
    return out


def _epochs_kept(s: Summary) -> list[str]:
    """Methods that select their epoch on a validation split (``train.select_every``): the epoch each seed
    kept, per class."""
    out = []
    for d in s.datasets:
        rows = []
        for m in s.methods:
            kept = {(r.cell.cls, r.cell.seed): r.metrics["epoch_kept"] for r in s.results if r.status == "ok"
                    and r.cell.method == m and r.cell.dataset == d and r.metrics.get("epoch_kept") is not None}
            if kept:
                seeds = sorted({seed for _, seed in kept})
                rows.append([m, *("/".join(str(kept.get((v, seed), "—")) for seed in seeds) for v in s.classes(d))])
        if rows:
            out += ["", f"## {d}: the epoch kept by train.select_every (validation split), seeds "
                    f"{'/'.join(str(x) for x in sorted({r.cell.seed for r in s.results if r.cell.dataset == d}))}",
                    ""]
            out += _table(["method", *(str(v) for v in s.classes(d))], rows)
    return out


def _seed_table(s: Summary) -> list[str]:
    """With several seeds: method (x dataset) x seed, the headline metric's mean over the dataset's classes, the
    values behind mean ± std; ``k of n classes`` for a seed still in part."""
    seeds = sorted({r.cell.seed for r in s.results if r.status == "ok"})
    if len(seeds) < 2:
        return []
    metric, several = s.suite.metric, len(s.datasets) > 1
    rows = []
    for m in s.methods:
        for d in s.datasets:
            n = len(s.classes(d))
            row = [m, *([d] if several else [])]
            for seed in seeds:
                got = [r.metrics[metric] for r in s.results if r.cell.method == m and r.cell.dataset == d
                       and r.cell.seed == seed and r.status == "ok" and r.metrics.get(metric) is not None]
                row.append("—" if not got else f"{np.mean(got):.4f}" if len(got) == n
                           else f"{len(got)} of {n} classes")
            rows.append(row)
    return ["", f"## {metric} per seed: the mean over each dataset's classes", "",
            *_table(["method", *(["dataset"] if several else []), *(f"seed {x}" for x in seeds)], rows)]


def _per_class(s: Summary) -> list[str]:
    """Per dataset with classes: method x class, the metric's mean over seeds."""
    out = []
    for d, entry in s.suite.datasets.items():
        values = s.classes(d)
        if len(values) < 2:
            continue
        rows = []
        for m in s.methods:
            vals = []
            for v in values:
                got = [r.metrics[s.suite.metric] for r in s.results if r.cell.method == m and r.cell.dataset == d
                       and r.cell.cls == v and r.status == "ok" and r.metrics.get(s.suite.metric) is not None]
                vals.append(f"{np.mean(got):.4f}" if got else "—")
            rows.append([m, *vals])
        out += ["", f"## {d}: {s.suite.metric} per {entry.key}, mean over seeds", ""]
        out += _table(["method", *(str(v) for v in values)], rows)
    return out


def plot(s: Summary, path: str) -> None:
    """Per dataset, each method's mean with its interval (or std); right, the paired differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def interval(ax: Any, x: float, lo: float, hi: float, cap: float) -> None:
        # drawn from its ends, not as lengths around the value: the mean over complete seeds can lie outside
        # an interval that also pools the cells of a seed still in part
        ax.vlines(x, lo, hi, colors="black", lw=1)
        ax.hlines([lo, hi], x - cap, x + cap, colors="black", lw=1)

    metric = s.suite.metric
    palette = plt.get_cmap("tab10" if len(s.methods) <= 10 else "tab20")
    color = {m: palette(j % palette.N) for j, m in enumerate(s.methods)}   # one per method, in both panels
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(s.methods))
    bottoms: list[float] = []
    for j, m in enumerate(s.methods):
        xs, ys, spans = [], [], []
        for i, d in enumerate(s.datasets):
            st = s.stats.get((m, d, metric))
            if st is None:
                continue
            ci = s.ci.get((m, d, metric)) or (st[0] - st[1], st[0] + st[1])   # without an interval: +- std
            xs.append(i + j * width)
            ys.append(st[0])
            spans.append(ci)
        axes[0].bar(xs, ys, width, label=m, color=color[m])
        for x, (lo, hi) in zip(xs, spans):
            interval(axes[0], x, lo, hi, width / 4)
        bottoms += [min(y, lo) for y, (lo, _) in zip(ys, spans)]
    others = [m for m in s.methods if m != s.suite.baseline]
    diff_metric = metric if any(key[2] == metric for key in s.paired) else "image_auroc"
    for k, m in enumerate(others):     # the paired differences, the methods side by side around each dataset
        pts = [(i + (k - (len(others) - 1) / 2) * 0.8 / max(1, len(others)), s.paired[(m, d, diff_metric)])
               for i, d in enumerate(s.datasets) if (m, d, diff_metric) in s.paired]
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1][0] for p in pts], "o", label=m, color=color[m])
            for x, (_, lo, hi) in pts:
                interval(axes[1], x, lo, hi, 0.02)
    axes[0].set_xticks([i + (len(s.methods) - 1) * width / 2 for i in range(len(s.datasets))], s.datasets)
    axes[1].set_xticks(range(len(s.datasets)), s.datasets)
    axes[1].set_xlim(-0.5, len(s.datasets) - 0.5)
    axes[0].set_ylabel(metric)
    axes[0].set_ylim(max(0.0, min(bottoms, default=0.5) - 0.05), 1.0)
    axes[0].set_title(f"{metric}: mean, " + ("95 % interval" if any(key[2] == metric for key in s.ci) else "± std"))
    axes[0].legend(fontsize=7)
    axes[1].axhline(0, color="grey", lw=1)
    axes[1].set_title(f"{diff_metric} minus baseline {s.suite.baseline or '(none)'}: paired, 95 % interval")
    if s.paired:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_outputs(out: str, suite: Suite, results: list[CellResult], speed: dict[str, Any], command: str,
                  env: dict[str, Any], readme: str | None = None) -> dict[str, str]:
    files = {k: os.path.join(out, n) for k, n in (("results", "results.csv"), ("summary", "summary.md"),
                                                  ("plot", "summary.png"), ("environment", "environment.json"))}
    write_results_csv(files["results"], results, out)
    s = Summary(suite, results)
    text = summarise(s, speed, command, env)
    write_text(files["summary"], text)
    plot(s, files["plot"])
    write_json(files["environment"], {**env, "speed": speed})
    if readme:
        write_readme(readme, suite.name, text)
        files["readme"] = readme
    return files


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmark:{name}:start -->", f"<!-- benchmark:{name}:end -->"


def check_readme(path: str, name: str) -> str:
    """The README's text, checked before any cell runs: the file exists and holds the suite's block's markers
    both or neither, in order; a :class:`ValueError` naming the file and the marker otherwise."""
    if not os.path.isfile(path):
        raise ValueError(f"--readme {path!r}: no such file (the README whose benchmark table to write)")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if (i < 0) != (j < 0) or (i >= 0 and j < i) or text.count(start) > 1 or text.count(end) > 1:
        raise ValueError(f"--readme {path!r}: expected the lines {start} and {end} once each, in that order, or "
                         "neither (the block is then appended)")
    return text


def readme_block(name: str, summary: str) -> str:
    """summary.md as a README section between the suite's markers: its title dropped, its headings one level
    down."""
    start, end = _markers(name)
    body = summary.split("\n", 1)[1].strip("\n")                  # the "# Benchmark <name>" title dropped
    body = "\n".join("#" + line if line.startswith("#") else line for line in body.splitlines())
    return (f"{start}\n\n## Benchmark `{name}` (written by `reconad benchmark --readme` from its summary.md)\n\n"
            f"{body}\n\n{end}")


def write_readme(path: str, name: str, summary: str) -> None:
    """Replace the suite's block in the README at ``path`` (or append it), atomically."""
    text = check_readme(path, name)
    start, end = _markers(name)
    block = readme_block(name, summary)
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text)
