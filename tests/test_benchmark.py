"""``reconad benchmark``: the quick suite end to end, resume, failed cells, determinism, the statistics against
sklearn and a numpy loop, and bad suites (one clear error before any cell runs)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from reconad.benchmark import BenchmarkError, SuiteError, load_suite
from reconad.benchmark.runner import CellResult, load_pixels, run_cells, run_one, save_pixels
from reconad.benchmark.stats import (Group, auroc_rows, auroc_weighted, bootstrap, draw_counts, interval, mean_std,
                                     pixel_replicates, pixel_stats)
from reconad.benchmark.suite import parse_suite
from reconad.benchmark.summary import Summary, _cell_times, _seed_table, plot, read_scores
from reconad.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "benchmarks" / "suites" / "quick.yaml"
DIGITS = str(ROOT / "configs" / "digits.yaml")
STEPS = {"train.steps": 2, "train.batch_size": 16, "test.report_images": 2}
TINY = {**STEPS, "model.encoder.channels": [8, 16], "model.memory.slots": 20}     # configs/digits.yaml, smaller


def _suite(tmp_path: Path, **changes) -> Path:
    """A one-dataset suite of tiny digits cells (16 px, 5 anomalies per class, 2 steps), written to a file."""
    raw = {"name": "tiny", "baseline": "memae", "seeds": [0],
           "methods": {"memae": {"config": DIGITS, "set": TINY}},
           "datasets": {"digits": {"data": {"name": "digits", "image_size": 16, "anomalies_per_class": 5},
                                   "classes": [0]}}}
    raw.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_quick_suite_end_to_end_then_resume_skips_every_cell(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert main(["benchmark", str(QUICK), "--out", str(out), "--quick", "--device", "cpu", "--jobs", "2"]) == 0
    rows = _rows(out)       # two processes; the rows in the suite's order
    assert [(r["method"], r["dataset"], r["status"]) for r in rows] == [
        ("memae", "digits", "ok"), ("memae", "brick", "ok"), ("cae", "digits", "ok"), ("cae", "brick", "ok")]
    for r in rows:       # each cell is an ordinary run folder, its metrics those of results.csv
        metrics = json.loads((out / r["run_dir"] / "metrics.json").read_text())
        assert float(r["image_auroc"]) == pytest.approx(metrics["image_auroc"], abs=1e-6)
        assert (out / r["run_dir"] / "report.html").is_file()
    assert rows[1]["aupro"] and not rows[0]["aupro"]          # pixel metrics where the dataset has masks
    assert load_pixels(str(out / rows[0]["run_dir"])) is None           # and the maps kept for their intervals
    paths, maps, masks, limit = load_pixels(str(out / rows[1]["run_dir"]))
    assert limit == 0.3 and maps.shape == masks.shape and len(paths) == maps.shape[0]
    assert roc_auc_score(masks.ravel(), maps.ravel()) == pytest.approx(float(rows[1]["pixel_auroc"]), abs=1e-6)
    assert rows[0]["scorers"] == f"l2:{float(rows[0]['image_auroc']):.6f}"     # every scorer's image AUROC
    # brick's cells list test.evaluators: [per_defect]; results.csv and the summary hold its numbers
    per_defect = json.loads((out / rows[1]["run_dir"] / "metrics.json").read_text())["evaluators"]["per_defect"]
    assert per_defect and rows[1]["evaluators"] == " ".join(f"per_defect.{k}:{v:.6f}" for k, v in per_defect.items())
    assert rows[0]["evaluators"] == ""
    summary = (out / "summary.md").read_text()
    assert "| memae |" in summary and "Paired against the baseline `memae`" in summary and "cells/hour" in summary
    assert "(2 job(s) x " in summary
    assert "## aupro: mean ± std over 1 seed(s) [95 % bootstrap interval]" in summary
    assert "difference in aupro" in summary and "difference in pixel_auroc" in summary
    assert "## per_defect on brick (test.evaluators)" in summary
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = json.loads((out / "environment.json").read_text())
    assert env["device"] == "cpu" and env["torch"] and env["commit"] and env["threads_per_job"] >= 1
    entry = json.loads((out / (rows[0]["run_dir"] + ".json")).read_text())
    assert entry["machine"] and entry["machine"] == env["device_name"]    # each cell says what it trained on
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) >= 4                       # a progress line per cell
    assert "scored" not in printed.err and "epoch" not in printed.err   # and nothing of each cell's own

    stamp = {r["run_dir"]: os.path.getmtime(out / r["run_dir"] / "checkpoint.pt") for r in rows}
    assert main(["benchmark", str(QUICK), "--out", str(out), "--quick", "--device", "cpu"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["benchmark", str(QUICK), "--out", str(out), "--quick", "--device", "cpu", "--resume"]) == 0
    assert "4 of 4 cells finished before (cached), 0 to run" in capsys.readouterr().out
    assert {r["run_dir"]: os.path.getmtime(out / r["run_dir"] / "checkpoint.pt") for r in rows} == stamp
    assert [r["cached"] for r in _rows(out)] == ["1"] * 4
    # another baseline: the same cells (all cached), compared with cae
    assert main(["benchmark", str(QUICK), "--out", str(out), "--quick", "--device", "cpu", "--resume",
                 "--baseline", "cae"]) == 0
    assert "4 of 4 cells finished before (cached), 0 to run" in capsys.readouterr().out
    summary = (out / "summary.md").read_text()
    assert "Paired against the baseline `cae`" in summary and "--resume --baseline cae`" in summary
    paired = summary.split("Paired against the baseline `cae`: difference in image_auroc", 1)[1].split("\n## ", 1)[0]
    assert "| memae |" in paired and "| cae |" not in paired


def test_failed_cell_is_recorded_the_rest_go_on_and_resume_reruns_failed_and_changed_cells(tmp_path: Path) -> None:
    twostage = str(ROOT / "configs" / "twostage" / "twostage.yaml")   # 2 steps < its 8 pretraining epochs
    suite = load_suite(str(_suite(tmp_path, methods={"broken": {"config": twostage, "set": STEPS},
                                                     "memae": {"config": DIGITS, "set": TINY}})))
    lines: list[str] = []
    results, _ = run_cells(suite, suite.cells(device="cpu"), str(tmp_path / "b"), log=lines.append)
    assert [r.status for r in results] == ["error", "ok"]
    assert "RunError" in results[0].error and "stage 1" in results[0].error
    assert any("FAILED" in line and "broken" in line for line in lines)
    results, _ = run_cells(suite, suite.cells(device="cpu"), str(tmp_path / "b"), resume=True, log=lines.append)
    assert lines[-2] == "1 of 2 cells finished before (cached), 1 to run"        # the failed cell runs again
    assert [r.cached for r in results] == [False, True]
    suite.methods["memae"].overrides.append("train.lr=0.002")           # a new config: a new cache key
    results, speed = run_cells(suite, suite.cells(device="cpu"), str(tmp_path / "b"), resume=True, log=lines.append)
    assert [r.cached for r in results] == [False, False] and speed["cells_run"] == 2


def test_a_time_limit_starts_only_the_cells_expected_to_end_within_it(tmp_path: Path, monkeypatch) -> None:
    """Method a's cells take 100 s, b's 10 s (a fake clock): a cell starts only when the median time of its
    method's cells (this session's, else the cached ones, else any this session ran) ends within the limit."""
    import concurrent.futures as cf

    from reconad.benchmark import runner
    from reconad.io import write_json

    suite = load_suite(str(_suite(tmp_path, baseline="a", methods={"a": {"config": DIGITS, "set": TINY},
                                                     "b": {"config": DIGITS, "set": TINY}}, datasets={
        "digits": {"data": {"name": "digits", "image_size": 16, "anomalies_per_class": 5}, "classes": [0, 1, 2]}})))
    cells = suite.cells(device="cpu")
    now, started = [0.0], []

    def fake_run_one(cell, out, key, threads=None, advance=1.0):
        seconds = 100.0 if cell.method == "a" else 10.0
        started.append(cell.label)
        now[0] += seconds * advance
        folder = os.path.join(out, cell.folder)
        write_json(folder + ".json", {"key": key, "status": "ok", "metrics": {"image_auroc": 0.5},
                                      "seconds": seconds, "machine": "x"})
        return CellResult(cell, "ok", {"image_auroc": 0.5}, seconds, False, folder, machine="x")

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    out, lines = str(tmp_path / "b"), []
    # nothing known: a/0 starts; a/1 (a: 100 s) ends at 200; a/2 would end at 300, b's (100 s: all this
    # session knows) too
    results, speed = run_cells(suite, cells, out, time_limit=250, clock=lambda: now[0], log=lines.append)
    assert started == ["a digits/0 seed 0", "a digits/1 seed 0"]
    assert [r.cell.label for r in results] == started
    assert speed["cells_run"] == 2 and speed["not_started"] == 4 and speed["cells_left"] == 4
    assert lines[-1] == ("--time-limit 0:04:10: 4 cell(s) not started, each expected to end past it; --resume goes "
                         "on with them")
    assert lines[-2].startswith("[2/6] a digits/1 seed 0: image_auroc 0.5000 (100 s)")   # a/2 still to decide
    # resumed within 50 s: a/2 (100 s by a's cached cells) is passed over, b's (unknown, then 10 s) fit
    now[0], started[:] = 0.0, []
    results, speed = run_cells(suite, cells, out, resume=True, time_limit=50, clock=lambda: now[0],
                               log=lines.append)
    assert started == ["b digits/0 seed 0", "b digits/1 seed 0", "b digits/2 seed 0"]
    assert len(results) == 5 and speed["not_started"] == 1
    with pytest.raises(BenchmarkError, match="--time-limit: expected a positive duration"):
        run_cells(suite, cells, out, resume=True, time_limit=0, log=lines.append)
    # two jobs: a/0 and a/1 start at once (each moving the clock 50 s); a/2 would end at 150 or 200 > 140
    monkeypatch.setattr(runner, "_pool", lambda jobs, threads: cf.ThreadPoolExecutor(jobs))
    monkeypatch.setattr(runner, "run_one", lambda *a: fake_run_one(*a, advance=0.5))
    now[0], started[:] = 0.0, []
    results, speed = run_cells(suite, cells, str(tmp_path / "c"), jobs=2, time_limit=140, clock=lambda: now[0],
                               log=lines.append)
    assert sorted(started) == ["a digits/0 seed 0", "a digits/1 seed 0"] and speed["not_started"] == 4


def test_time_limit_flag_parses_durations_and_goes_into_the_command(tmp_path: Path, capsys) -> None:
    from reconad.cli import _duration

    assert [_duration(t) for t in ("90", "45s", "30m", "2h", "1.5h", "1:30:00")] == [90, 45, 1800, 7200, 5400, 5400]
    for bad in ("0", "-5m", "2d", "soon", "1:30", "inf"):
        with pytest.raises(Exception, match="expected a positive duration"):
            _duration(bad)
    path = _suite(tmp_path)
    with pytest.raises(SystemExit):
        main(["benchmark", str(path), "--out", str(tmp_path / "x"), "--time-limit", "soon"])
    assert main(["benchmark", str(path), "--out", str(tmp_path / "x"), "--summary-only", "--time-limit", "1h"]) != 0
    assert "--summary-only runs no cell, so --time-limit" in capsys.readouterr().err
    assert main(["benchmark", str(path), "--out", str(tmp_path / "x"), "--device", "cpu", "--time-limit", "1h"]) == 0
    assert "--resume --time-limit 3600s" in (tmp_path / "x" / "summary.md").read_text()


def test_a_selection_runs_only_its_cells_and_the_summary_holds_every_finished_one(tmp_path: Path, capsys) -> None:
    path = _suite(tmp_path, methods={"memae": {"config": DIGITS, "set": TINY}, "other": {"config": DIGITS, "set": {
        **TINY, "model.memory.slots": 10}}}, datasets={"digits": {"data": {
            "name": "digits", "image_size": 16, "anomalies_per_class": 5}, "classes": [0, 1]}}, seeds=[0, 1])
    out = tmp_path / "b"
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--methods", "memae",
                 "--classes", "1", "--seeds", "0"]) == 0
    assert [(r["method"], r["class"], r["seed"]) for r in _rows(out)] == [("memae", "1", "0")]
    printed = capsys.readouterr().out
    assert "8 cells, 1 selected" in printed and "7 cell(s) of the suite not selected" in printed
    summary = (out / "summary.md").read_text()
    assert "**Partial**: 1 of 8 cells" in summary and "--methods memae --classes 1 --seeds 0 --resume" in summary
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--resume", "--methods", "memae",
                 "--seeds", "0"]) == 0
    rows = _rows(out)
    assert [(r["class"], r["cached"]) for r in rows] == [("0", "0"), ("1", "1")]
    # both classes of seed 0 finished: the method's dataset mean is their mean
    mean = (float(rows[0]["image_auroc"]) + float(rows[1]["image_auroc"])) / 2
    assert f"| memae | {mean:.4f} (1 seed) [" in (out / "summary.md").read_text()
    for option, value, have in (("--methods", "memea", "did you mean 'memae'"), ("--seeds", "7", "it has: 0, 1"),
                                ("--classes", "4", "it has: 0, 1"), ("--datasets", "brick", "it has: digits"),
                                ("--baseline", "othr", "did you mean 'other'")):
        assert main(["benchmark", str(path), "--out", str(out), "--resume", option, value]) == 2
        err = capsys.readouterr().err
        assert f"{option}: the suite has no {value!r}" in err and have in err
    assert len(_rows(out)) == 2                                   # nothing ran, nothing rewritten
    with pytest.raises(SystemExit):
        main(["benchmark", str(path), "--out", str(out), "--seeds", "a,b"])


def test_readme_block_is_written_from_the_summary_appended_then_replaced(tmp_path: Path, capsys) -> None:
    path, out, readme = _suite(tmp_path), tmp_path / "b", tmp_path / "README.md"
    readme.write_text("# My plugin\n\nText before.\n")
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--readme", str(readme)]) == 0
    text = readme.read_text()
    summary = (out / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| memae |"))
    assert text.startswith("# My plugin\n\nText before.\n\n<!-- benchmark:tiny:start -->")
    assert text.rstrip().endswith("<!-- benchmark:tiny:end -->") and row in text
    assert "\n### image_auroc" in text and "# Benchmark tiny" not in text       # headings one level down
    readme.write_text(text + "\nText after.\n")
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--resume", "--readme", str(readme)]) == 0
    again = readme.read_text()
    assert again.count("<!-- benchmark:tiny:start -->") == 1 and again.endswith("\nText after.\n")
    assert "cells came from the cache" not in again and "1 cell(s) came from the cache" in again
    readme.write_text("<!-- benchmark:tiny:end -->\n<!-- benchmark:tiny:start -->\n")
    capsys.readouterr()
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--resume", "--readme", str(readme)]) == 2
    assert "expected the lines <!-- benchmark:tiny:start -->" in capsys.readouterr().err
    assert main(["benchmark", str(path), "--out", str(out), "--device", "cpu", "--resume", "--readme", str(tmp_path / "nope.md")]) == 2
    assert "nope.md': no such file" in capsys.readouterr().err


def _tables(summary: str) -> list[str]:
    """summary.md's table rows and headings (not the command line, the speed or the notes)."""
    return [line for line in summary.split("\n## Speed", 1)[0].split("\n## Notes", 1)[0].splitlines()
            if line.startswith(("|", "##"))]


def test_archive_keeps_finished_cells_and_a_new_checkout_goes_on_from_it(tmp_path: Path, capsys) -> None:
    path = _suite(tmp_path, methods={"memae": {"config": DIGITS, "set": TINY}, "other": {"config": DIGITS, "set": {
        **TINY, "model.memory.slots": 10}}}, datasets={"digits": {"data": {
            "name": "digits", "image_size": 16, "anomalies_per_class": 5}, "classes": [0, 1]}})
    archive, first = tmp_path / "archive", tmp_path / "first"
    assert main(["benchmark", str(path), "--out", str(first), "--device", "cpu", "--methods", "memae"]) == 0
    # the archive asked for later: the cells finished before go in too, then a new cell as it finishes
    assert main(["benchmark", str(path), "--out", str(first), "--device", "cpu", "--resume", "--archive",
                 str(archive), "--classes", "0"]) == 0
    kept = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file())
    assert [k for k in kept if not k.startswith("images/")] == [
        f"cells/{m}/digits/{c}/seed0.{ext}" for m in ("memae", "other") for c in (0, 1) if (m, c) != ("other", 1)
        for ext in ("json", "npz")]
    assert len([k for k in kept if k.startswith("images/")]) == 2          # one list per test set
    assert sum(p.stat().st_size for p in archive.rglob("*.npz")) < 4000   # small enough to commit
    want = (first / "summary.md").read_text()

    second = tmp_path / "second"          # a new checkout: no run folders, only the archive
    capsys.readouterr()
    assert main(["benchmark", str(path), "--out", str(second), "--device", "cpu", "--archive", str(archive),
                 "--classes", "0"]) == 0
    printed = capsys.readouterr().out
    assert "3 finished cell(s) restored from the archive" in printed and "0 to run" in printed
    assert _tables((second / "summary.md").read_text()) == _tables(want)   # ranks: every number the same
    # the summary alone from the archive into a fresh folder: no cell runs, the same tables
    assert main(["benchmark", str(path), "--out", str(tmp_path / "other"), "--archive", str(archive),
                 "--summary-only"]) == 2          # not --device cpu: other configs than the archived cells'
    assert "the 3 cell(s) restored from --archive" in capsys.readouterr().err
    assert main(["benchmark", str(path), "--out", str(tmp_path / "only"), "--device", "cpu", "--archive",
                 str(archive), "--summary-only"]) == 0
    printed = capsys.readouterr().out
    assert "0 to run" in printed and "1 cell(s) of the suite not finished: left out of the summary" in printed
    assert _tables((tmp_path / "only" / "summary.md").read_text()) == _tables(want)
    assert "--summary-only --archive" in (tmp_path / "only" / "summary.md").read_text()    # the command recorded
    assert not (tmp_path / "only" / "cells" / "other" / "digits" / "1").exists()
    assert main(["benchmark", str(path), "--out", str(tmp_path / "only"), "--summary-only", "--seeds", "0"]) == 2
    assert "--summary-only runs no cell, so --seeds (which choose the cells to run) cannot go" in capsys.readouterr().err
    assert main(["benchmark", str(path), "--out", str(tmp_path / "empty"), "--summary-only"]) == 2
    assert "--summary-only: no finished cell of this suite in --out" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "summary.md").exists()
    assert not (second / "cells" / "memae" / "digits" / "0" / "seed0" / "checkpoint.pt").exists()
    assert main(["benchmark", str(path), "--out", str(second), "--device", "cpu", "--archive", str(archive)]) == 0
    assert "1 to run" in capsys.readouterr().out and (archive / "cells" / "other" / "digits" / "1" / "seed0.npz").is_file()
    # a method changed since its cells were archived: restored, then run again in the restored folders
    changed = path.read_text().replace("slots: 10", "slots: 12")
    assert changed != path.read_text()
    path.write_text(changed)
    assert main(["benchmark", str(path), "--out", str(tmp_path / "changed"), "--device", "cpu", "--archive",
                 str(archive), "--methods", "other"]) == 0
    assert "2 to run" in capsys.readouterr().out
    assert [r["status"] for r in _rows(tmp_path / "changed") if r["method"] == "other"] == ["ok", "ok"]
    (archive / "cells" / "memae" / "digits" / "0" / "seed0.npz").write_bytes(b"broken")
    assert main(["benchmark", str(path), "--out", str(tmp_path / "third"), "--archive", str(archive)]) == 2
    assert "seed0.npz: unreadable archived scores" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "suites").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_suite_reads_and_every_cell_config_validates(path: Path) -> None:
    from reconad.benchmark.suite import check_cells

    suite = load_suite(str(path))
    cells = suite.cells()
    check_cells(suite, cells)               # every method x dataset config, as `reconad run` would validate it
    assert suite.baseline in suite.methods and len(cells) == (
        len(suite.methods) * len(suite.seeds) * sum(len(d.values) for d in suite.datasets.values()))
    assert len({c.folder for c in cells}) == len(cells)           # no two cells share a run folder


def test_same_cell_twice_on_cpu_gives_identical_metrics(tmp_path: Path) -> None:
    suite = load_suite(str(_suite(tmp_path)))
    cell = suite.cells(device="cpu")[0]
    a, b = (run_one(cell, str(tmp_path / name), "k") for name in ("a", "b"))
    assert a.status == b.status == "ok" and a.metrics == b.metrics
    assert (Path(a.run_dir) / "scores.csv").read_bytes() == (Path(b.run_dir) / "scores.csv").read_bytes()


# ---- statistics ---------------------------------------------------------------------------------------------

def _reference_replicates(groups: list[tuple[np.ndarray, dict[str, np.ndarray]]], n_boot: int, seed: int):
    """The bootstrap as a loop: the same draws, sklearn's AUROC per resample and seed."""
    rng = np.random.default_rng(seed)
    methods = sorted({m for _, runs in groups for m in runs})
    out = {m: np.full((len(groups), n_boot), np.nan) for m in methods}
    for gi, (labels, runs) in enumerate(groups):
        normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        d0 = rng.integers(0, len(normal), (n_boot, len(normal)))
        d1 = rng.integers(0, len(anomalous), (n_boot, len(anomalous)))
        for m, seeds in runs.items():
            for b in range(n_boot):
                idx = np.r_[normal[d0[b]], anomalous[d1[b]]]
                out[m][gi, b] = np.mean([roc_auc_score(labels[idx], s[idx]) for s in seeds])
    return out


def _fake_groups(rng: np.random.Generator) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    groups = []
    for n0, n1 in ((30, 50), (25, 40)):
        labels = rng.permutation(np.r_[np.zeros(n0, int), np.ones(n1, int)])
        runs = {m: np.round(rng.normal(size=(2, n0 + n1)) + shift * labels, 1)       # rounded: ties
                for m, shift in (("a", 1.0), ("b", 0.5))}
        groups.append((labels, runs))
    return groups


def test_auroc_rows_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=(5, 200)) + labels, 1)
    np.testing.assert_allclose(auroc_rows(scores, labels), [roc_auc_score(labels, s) for s in scores], atol=1e-12)
    with pytest.raises(ValueError, match="normal and anomalous"):
        auroc_rows(scores, np.ones(200, int))


def test_auroc_weighted_matches_sklearn_sample_weight() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)               # rounded: ties within and across labels
    weights = rng.integers(0, 4, (6, 300))                           # draw counts, zeros included
    want = [roc_auc_score(labels, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(auroc_weighted(scores, labels, weights), want, atol=1e-12)
    ones = auroc_weighted(scores, labels, np.ones(300, int))         # weights of 1: the plain AUROC
    assert ones[0] == auroc_rows(scores, labels)[0]
    with pytest.raises(ValueError, match=r"weights \(R, N\), got \(300,\), \(300,\) and \(2, 299\)"):
        auroc_weighted(scores, labels, np.ones((2, 299), int))
    only_normal = np.where(labels == 1, 0, 1)[None]
    with pytest.raises(ValueError, match="normal and anomalous images in every row"):
        auroc_weighted(scores, labels, only_normal)


def test_read_scores_reads_labelled_rows_and_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "scores.csv").write_text("label,path,score\n1,a.png,0.5\n0,b.png,-2\n,c.png,0.1\n")
    assert read_scores(str(tmp_path)) == {"a.png": (0.5, 1), "b.png": (-2.0, 0)}    # c.png: no label
    (tmp_path / "scores.csv").write_text("path,score\na.png,0.5\n")
    with pytest.raises(KeyError, match=r"scores\.csv: no column\(s\) label"):
        read_scores(str(tmp_path))
    (tmp_path / "scores.csv").write_text("path,score,label\na.png,0.5,1\nb.png,0.25\n")     # cut short
    with pytest.raises(ValueError, match=r"scores\.csv, line 3: too few columns"):
        read_scores(str(tmp_path))
    (tmp_path / "scores.csv").write_text("path,score,label\na.png,high,1\n")
    with pytest.raises(ValueError, match=r"line 2: could not convert string to float: 'high'"):
        read_scores(str(tmp_path))


def test_bootstrap_matches_a_loop_over_sklearn() -> None:
    groups = _fake_groups(np.random.default_rng(1))
    got = bootstrap([Group(str(i), lab, runs) for i, (lab, runs) in enumerate(groups)], n_boot=40, seed=7, chunk=16)
    want = _reference_replicates(groups, 40, 7)
    assert list(got) == ["image_auroc"]                          # no maps: no pixel metrics
    for m in ("a", "b"):
        np.testing.assert_allclose(got["image_auroc"][m], want[m], atol=1e-12)
    reps = want["a"].mean(0)
    assert interval(reps) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((np.mean([1, 2, 4]), np.std([1, 2, 4], ddof=1)))
    assert mean_std([0.5]) == (0.5, 0.0)


@pytest.mark.parametrize("headline", ["image_auroc", "aupro"])   # image AUROC's intervals whatever the headline
def test_summary_intervals_and_paired_difference_from_scores_files(tmp_path: Path, headline: str) -> None:
    groups = _fake_groups(np.random.default_rng(2))
    suite = parse_suite({"baseline": "b", "seeds": [0, 1], "methods": {"a": DIGITS, "b": DIGITS}, "metric": headline,
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1]}}},
                        str(tmp_path / "s.yaml"))
    cells = {(c.method, c.cls, c.seed): c for c in suite.cells()}
    results = []
    for cls, (labels, runs) in enumerate(groups):
        for m, seeds in runs.items():
            for seed, scores in enumerate(seeds):
                folder = tmp_path / m / str(cls) / str(seed)
                folder.mkdir(parents=True)
                order = np.random.default_rng(seed).permutation(len(labels))    # the file's row order is free
                with open(folder / "scores.csv", "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["path", "score", "label"])
                    w.writerows([f"img{i:03d}", repr(float(scores[i])), int(labels[i])] for i in order)
                results.append(CellResult(cells[(m, cls, seed)], "ok",
                                          {"image_auroc": roc_auc_score(labels, scores)}, 1.0, False, str(folder)))
    s = Summary(suite, results, n_boot=60, seed=5)
    reps = _reference_replicates(groups, 60, 5)
    for m in ("a", "b"):
        per_seed = [np.mean([roc_auc_score(lab, runs[m][seed]) for lab, runs in groups]) for seed in (0, 1)]
        mean, std, n = s.stats[(m, "digits", "image_auroc")]
        assert (mean, std, n) == pytest.approx((np.mean(per_seed), np.std(per_seed, ddof=1), 2))
        assert s.ci[(m, "digits", "image_auroc")] == pytest.approx(tuple(np.percentile(reps[m].mean(0), [2.5, 97.5])))
    point = np.mean([np.mean([roc_auc_score(lab, s_) for s_ in runs["a"]])
                     - np.mean([roc_auc_score(lab, s_) for s_ in runs["b"]]) for lab, runs in groups])
    diff = (reps["a"] - reps["b"]).mean(0)
    assert s.paired[("a", "digits", "image_auroc")] == pytest.approx((point, *np.percentile(diff, [2.5, 97.5])))
    assert ("b", "digits", "image_auroc") not in s.paired
    # the per-seed table: each seed's mean over the classes; a seed still in part says how far it is
    table = _seed_table(s)
    if headline == "image_auroc":
        for m in ("a", "b"):
            want = [f"{np.mean([roc_auc_score(lab, runs[m][seed]) for lab, runs in groups]):.4f}" for seed in (0, 1)]
            assert f"| {m} | {want[0]} | {want[1]} |" in table
        unfinished = [r for r in results if (r.cell.method, r.cell.cls, r.cell.seed) != ("a", 1, 1)]
        part = _seed_table(Summary(suite, unfinished, n_boot=10, seed=5))
        assert next(line for line in part if line.startswith("| a |")).endswith("| 1 of 2 classes |")
    else:                                                                          # the cells give no AUPRO
        assert "| a | — | — |" in table and "## aupro per seed: the mean over each dataset's classes" in table
    # the median time of a cell, per method and machine
    for i, r in enumerate(results):
        r.seconds, r.machine = float(10 + i), ("cpu A" if r.cell.method == "a" and r.cell.seed == 0 else "")
    secs = {k: [r.seconds for r in results if (r.cell.method, r.machine or "none") == k]
            for k in (("a", "cpu A"), ("a", "none"), ("b", "none"))}
    med = {k: f"{np.median(v):.0f} s ({len(v)})" for k, v in secs.items()}
    assert _cell_times(s)[-4:] == ["| method | cpu A | not recorded |", "|---|---|---|",
                                   f"| a | {med['a', 'cpu A']} | {med['a', 'none']} |", f"| b | — | {med['b', 'none']} |"]
    assert med["b", "none"].endswith("s (4)")


def _fake_maps(rng: np.random.Generator, n: int = 24, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Half the images anomalous, with one or two rectangular regions; scores rounded (ties), higher inside."""
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 2):
        y, x = rng.integers(0, size - 5, 2)
        masks[i, y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = True
        if i % 3 == 0:
            masks[i, -2:, :2] = True
    return masks, lambda shift: np.round(rng.normal(size=masks.shape) + shift * masks, 1).astype(np.float32)


def test_pixel_replicates_match_sklearn_and_aupro_on_the_resampled_images() -> None:
    from reconad.metrics import aupro

    rng = np.random.default_rng(3)
    masks, maps_of = _fake_maps(rng)
    maps = maps_of(1.0)
    st = pixel_stats(maps, masks, fpr_limit=0.3)
    draw = np.c_[rng.integers(0, 12, (30, 12)), rng.integers(12, 24, (30, 12))]   # stratified, with repeats
    weights = draw_counts(draw, 24)
    assert (weights.sum(1) == 24).all() and (weights[:, :12].sum(1) == 12).all()
    auroc, area = pixel_replicates(st, np.vstack([np.ones(24), weights]))
    assert auroc[0] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert area[0] == pytest.approx(aupro(maps, masks, 0.3), abs=1e-3)
    for b, idx in enumerate(draw, start=1):    # image i counted w_i times = the set with the repeats
        assert auroc[b] == pytest.approx(roc_auc_score(masks[idx].ravel(), maps[idx].ravel()), abs=1e-12)
        assert area[b] == pytest.approx(aupro(maps[idx], masks[idx], 0.3), abs=1e-3)
    with pytest.raises(ValueError, match=r"one shape \(N, H, W\)"):
        pixel_stats(maps, masks[:, :8])


def test_summary_pixel_intervals_from_the_cells_maps(tmp_path: Path) -> None:
    """Pixel AUROC and AUPRO intervals and the paired difference from each cell's pixels.npz, against a loop
    over the same draws with sklearn and reconad.metrics.aupro; a cell with other masks is left out, noted."""
    from types import SimpleNamespace

    from reconad.metrics import aupro

    rng = np.random.default_rng(4)
    groups = []
    for _ in range(2):
        masks, maps_of = _fake_maps(rng)
        groups.append((masks, {m: [maps_of(shift) for _ in range(2)] for m, shift in (("a", 1.0), ("b", 0.6))}))
    suite = parse_suite({"baseline": "b", "seeds": [0, 1], "metric": "aupro", "methods": {"a": DIGITS, "b": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1]}}},
                        str(tmp_path / "s.yaml"))
    cells = {(c.method, c.cls, c.seed): c for c in suite.cells()}
    results = []
    for cls, (masks, runs) in enumerate(groups):
        labels = masks.reshape(len(masks), -1).any(1).astype(int)
        for m, seeds in runs.items():
            for seed, maps in enumerate(seeds):
                folder = tmp_path / m / str(cls) / str(seed)
                folder.mkdir(parents=True)
                order = np.random.default_rng(seed).permutation(len(maps))       # any order in the files
                paths = [f"img{i:03d}" for i in order]
                with open(folder / "scores.csv", "w", newline="") as fh:
                    csv.writer(fh).writerows([["path", "score", "label"],
                                              *([p, float(maps[i].max()), labels[i]] for p, i in zip(paths, order))])
                save_pixels(str(folder), SimpleNamespace(pixel=maps[order], masks=masks[order], paths=paths), 0.3)
                metrics = {"image_auroc": 0.5, "pixel_auroc": roc_auc_score(masks.ravel(), maps.ravel()),
                           "aupro": aupro(maps, masks, 0.3)}
                results.append(CellResult(cells[(m, cls, seed)], "ok", metrics, 1.0, False, str(folder)))
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "scores.csv").write_bytes((tmp_path / "a" / "0" / "1" / "scores.csv").read_bytes())
    paths, maps, masks, _ = load_pixels(str(tmp_path / "a" / "0" / "1"))
    save_pixels(str(odd), SimpleNamespace(pixel=maps, masks=np.roll(masks, 1, axis=2), paths=paths), 0.3)
    results[1] = CellResult(results[1].cell, "ok", results[1].metrics, 1.0, False, str(odd))   # a, class 0, seed 1
    s = Summary(suite, results, n_boot=40, seed=5)
    assert s.notes == ["a digits/0 seed 1: its ground-truth masks differ from the other runs of its class; left out "
                       "of the pixel intervals"]

    rng = np.random.default_rng(5)       # the bootstrap's draws, group by group (sorted image names)
    want = {(k, m): np.zeros((2, 40)) for k in ("pixel_auroc", "aupro") for m in ("a", "b")}
    for gi, (masks, runs) in enumerate(groups):
        labels = masks.reshape(len(masks), -1).any(1)
        normal, anomalous = np.flatnonzero(~labels), np.flatnonzero(labels)
        d0 = rng.integers(0, len(normal), (40, len(normal)))
        d1 = rng.integers(0, len(anomalous), (40, len(anomalous)))
        for m, seeds in runs.items():
            kept = seeds[:1] if (m, gi) == ("a", 0) else seeds      # the odd cell left out
            for b in range(40):
                idx = np.r_[normal[d0[b]], anomalous[d1[b]]]
                want[("pixel_auroc", m)][gi, b] = np.mean([roc_auc_score(masks[idx].ravel(), x[idx].ravel())
                                                           for x in kept])
                want[("aupro", m)][gi, b] = np.mean([aupro(x[idx], masks[idx], 0.3) for x in kept])
    for k, tol in (("pixel_auroc", 1e-9), ("aupro", 2e-3)):
        for m in ("a", "b"):
            assert s.ci[(m, "digits", k)] == pytest.approx(tuple(np.percentile(want[(k, m)].mean(0), [2.5, 97.5])),
                                                           abs=tol)
        point = np.mean([np.mean([r.metrics[k] for r in results if r.cell.method == "a" and r.cell.cls == c])
                         - np.mean([r.metrics[k] for r in results if r.cell.method == "b" and r.cell.cls == c])
                         for c in (0, 1)])
        diff = (want[(k, "a")] - want[(k, "b")]).mean(0)
        assert s.paired[("a", "digits", k)] == pytest.approx((point, *np.percentile(diff, [2.5, 97.5])), abs=tol)


# ---- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"baseline": "memea"}, r"baseline: unknown method 'memea'; did you mean 'memae'\?"),
    ({"datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 12]}}},
     r"datasets.digits.classes: digits has no class 12 \(its classes: 0..9\)"),
    ({"datasets": {"t": {"data": {"name": "textures"}, "categories": ["brik"]}}},
     r"datasets.t.categories: textures has no category 'brik'; did you mean 'brick'\?"),
    ({"methods": {"memae": {"config": "nowhere.yaml"}}}, r"methods.memae.config: config file 'nowhere.yaml' not found"),
    ({"methods": {"memae": {"config": DIGITS, "sett": {}}}}, r"methods.memae.sett: unknown key; did you mean 'set'\?"),
    ({"seeds": "many"}, r"seeds: expected a list of ints"),
    ({"metric": "auroc"}, r"metric: expected one of image_auroc, pixel_auroc, aupro"),
])
def test_bad_suites_name_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(str(_suite(tmp_path, **changes)))


def test_unknown_dataset_and_bad_key_fail_before_any_cell(tmp_path: Path, capsys) -> None:
    path = _suite(tmp_path, datasets={"d": {"data": {"name": "digts"}, "classes": [0]}})
    assert main(["benchmark", str(path), "--out", str(tmp_path / "b")]) == 2
    assert "unknown dataset 'digts'; did you mean 'digits'?" in capsys.readouterr().err
    path = _suite(tmp_path, methods={"memae": {"config": DIGITS, "set": {"train.epoks": 2}}})
    assert main(["benchmark", str(path), "--out", str(tmp_path / "b")]) == 2
    assert "train.epoks: unknown key; did you mean 'epochs'?" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_unreadable_cache_fails_before_any_cell(tmp_path: Path) -> None:
    suite = load_suite(str(_suite(tmp_path, seeds=[0, 1])))
    cells = suite.cells(device="cpu")
    entry = tmp_path / "b" / (cells[1].folder + ".json")
    entry.parent.mkdir(parents=True)
    entry.write_text("{not json")
    with pytest.raises(BenchmarkError, match=r"unreadable cache entry .*seed1\.json.*delete it"):
        run_cells(suite, cells, str(tmp_path / "b"), resume=True, log=lambda s: None)
    assert not (tmp_path / "b" / cells[0].folder).exists()


def test_the_last_layer_giving_the_training_length_wins(tmp_path: Path) -> None:
    from reconad.config import load_config, to_dict

    suite = load_suite(str(_suite(tmp_path, methods={"memae": {"config": DIGITS, "set": {"train.epochs": 3}}},
                                  quick={"set": {"train.steps": 2}})))
    (full,) = suite.cells()
    (quick,) = suite.cells(quick=True)
    assert [s for s in full.overrides if s.startswith("train.")][:1] == ["train.epochs=3"]
    cfg = load_config(quick.config, list(quick.overrides))
    assert to_dict(cfg)["train"]["steps"] == 2 and to_dict(cfg)["train"]["epochs"] is None   # the length in effect
    assert load_config(full.config, list(full.overrides)).train.epochs == 3


def test_every_seed_sees_the_same_test_images_and_a_cell_whose_labels_differ_is_left_out(tmp_path: Path) -> None:
    from reconad.benchmark.summary import load_groups
    from reconad.config import load_config

    suite = load_suite(str(_suite(tmp_path, seeds=[0, 3])))
    assert [load_config(c.config, list(c.overrides)).data.seed for c in suite.cells()] == [0, 0]
    labels = np.r_[np.zeros(5, int), np.ones(5, int)]
    results = []
    for cell, y in zip(suite.cells(), (labels, labels[::-1])):     # same image names, the second relabelled
        folder = tmp_path / f"seed{cell.seed}"
        folder.mkdir()
        with open(folder / "scores.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["path", "score", "label"], *([f"img{i}", i / 10, y[i]] for i in range(10))])
        results.append(CellResult(cell, "ok", {"image_auroc": 1.0}, 1.0, False, str(folder)))
    (group,), notes = load_groups(results)
    assert group.runs["memae"].shape == (1, 10) and np.array_equal(group.labels, labels)
    assert len(notes) == 1 and "seed 3: its test images or labels differ" in notes[0]


def test_cells_without_maps_are_one_note_per_method(tmp_path: Path) -> None:
    """Cells restored from an archive carry no pixels.npz: left out of the pixel intervals, and said once per
    method with where they are (a suite restores dozens), while a cell with maps of the same class still counts.
    A method without maps for some of its classes gets no pixel interval nor paired pixel difference (they would
    not bracket its mean over every class); one with maps for every class gets both."""
    from types import SimpleNamespace

    from reconad.benchmark.summary import load_groups

    masks, maps_of = _fake_maps(np.random.default_rng(2))
    labels = masks.reshape(len(masks), -1).any(1).astype(int)
    suite = parse_suite({"baseline": "c", "seeds": [0, 1, 2], "methods": {"a": DIGITS, "b": DIGITS, "c": DIGITS,
                                                                         "d": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1]}}},
                        str(tmp_path / "s.yaml"))
    results = []
    for cell in suite.cells():
        folder = tmp_path / cell.method / str(cell.cls) / str(cell.seed)
        folder.mkdir(parents=True)
        maps, paths = maps_of(1.0), [f"img{i:03d}" for i in range(len(masks))]
        with open(folder / "scores.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["path", "score", "label"], *([p, float(m.max()), y]
                                                                    for p, m, y in zip(paths, maps, labels))])
        if (cell.method, cell.cls, cell.seed) == ("b", 1, 2) or cell.method in "cd":   # b: one cell kept maps
            save_pixels(str(folder), SimpleNamespace(pixel=maps, masks=masks, paths=paths), 0.3)
        results.append(CellResult(cell, "ok", {"image_auroc": 0.5, "pixel_auroc": 0.5, "aupro": 0.5}, 1.0, False,
                                  str(folder)))
    groups, notes = load_groups(results)
    assert notes == ["a: 6 cells without pixels.npz (digits/0 seeds 0, 1, 2; digits/1 seeds 0, 1, 2): restored from "
                     "an archive, or run by an older reconad; left out of the pixel intervals",
                     "b: 5 cells without pixels.npz (digits/0 seeds 0, 1, 2; digits/1 seeds 0, 1): restored from an "
                     "archive, or run by an older reconad; left out of the pixel intervals"]
    assert [len(g.pixel.get("b", [])) for g in groups] == [0, 1] and not any("a" in g.pixel for g in groups)
    s = Summary(suite, results, n_boot=20, seed=1)
    for metric in ("pixel_auroc", "aupro"):
        assert [(m, "digits", metric) in s.ci for m in "abcd"] == [False, False, True, True]
        assert [(m, "digits", metric) in s.paired for m in "abd"] == [False, False, True]
    assert all((m, "digits", "image_auroc") in s.ci for m in "abcd")


def test_a_method_with_classes_still_to_run_gets_no_interval(tmp_path: Path) -> None:
    """A method that has finished some classes of a dataset (a long suite run in parts) gets neither a mean nor an
    interval nor a paired difference over the dataset: over its finished classes alone they would not bracket the
    mean over every class. Once every class has a seed, it gets all three."""
    suite = parse_suite({"baseline": "b", "seeds": [0], "methods": {"a": DIGITS, "b": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1]}}},
                        str(tmp_path / "s.yaml"))
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    results = []
    for cell in suite.cells():
        folder = tmp_path / cell.method / str(cell.cls)
        folder.mkdir(parents=True)
        with open(folder / "scores.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["path", "score", "label"],
                                      *([f"img{i:03d}", float(rng.normal(y)), y] for i, y in enumerate(labels))])
        results.append(CellResult(cell, "ok", {"image_auroc": 0.8}, 1.0, False, str(folder)))
    partial = Summary(suite, [r for r in results if (r.cell.method, r.cell.cls) != ("a", 1)], n_boot=20, seed=1)
    assert ("a", "digits", "image_auroc") not in partial.stats
    assert ("a", "digits", "image_auroc") not in partial.ci and ("a", "digits", "image_auroc") not in partial.paired
    assert partial.cell("a", "digits", "image_auroc") == "—" and ("b", "digits", "image_auroc") in partial.ci
    full = Summary(suite, results, n_boot=20, seed=1)
    assert ("a", "digits", "image_auroc") in full.ci and ("a", "digits", "image_auroc") in full.paired


def test_plot_draws_an_interval_that_excludes_the_mean(tmp_path: Path) -> None:
    """Seed 0 complete and near chance, seed 1 in part and perfect: the mean (complete seeds only) lies below
    the interval (every finished cell pooled); the plot draws it (error lengths would be negative)."""
    suite = parse_suite({"baseline": "b", "seeds": [0, 1], "methods": {"a": DIGITS, "b": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1]}}},
                        str(tmp_path / "s.yaml"))
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    results = []
    for c in suite.cells():
        if c.method == "a" and c.seed == 1 and c.cls == 1:
            continue                                   # seed 1 of a: in part
        perfect = c.method == "a" and c.seed == 1
        scores = labels + 0.1 * rng.random(100) if perfect else rng.random(100)
        folder = tmp_path / c.folder
        folder.mkdir(parents=True)
        with open(folder / "scores.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["path", "score", "label"],
                                      *([f"img{i}", scores[i], labels[i]] for i in range(100))])
        results.append(CellResult(c, "ok", {"image_auroc": roc_auc_score(labels, scores)}, 1.0, False, str(folder)))
    s = Summary(suite, results, n_boot=50)
    mean, (lo, hi) = s.stats[("a", "digits", "image_auroc")][0], s.ci[("a", "digits", "image_auroc")]
    assert mean < lo                                   # the case drawn
    plot(s, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_reports_evaluators_and_the_epochs_kept(tmp_path: Path) -> None:
    from reconad.benchmark.summary import summarise

    suite = parse_suite({"baseline": "b", "seeds": [0, 1], "methods": {"a": DIGITS, "b": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1, 2]}}},
                        str(tmp_path / "s.yaml"))
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(6, int), np.ones(6, int)]
    values, results = {}, []
    for c in suite.cells():
        folder = tmp_path / c.folder
        folder.mkdir(parents=True)
        with open(folder / "scores.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["path", "score", "label"],
                                      *([f"img{i}", rng.random(), labels[i]] for i in range(12))])
        metrics: dict = {"image_auroc": 0.5}
        if c.method == "a":     # a per_defect-like evaluator: no key for the class's own digit
            values[c] = {f"digit_{k}": float(rng.random()) for k in range(3) if k != c.cls}
            metrics.update(evaluators={"per": values[c]}, epoch_kept=10 * c.cls + c.seed)
        results.append(CellResult(c, "ok", metrics, 1.0, False, str(folder)))
    s = Summary(suite, results, n_boot=20)
    table = s.evaluators()[("digits", "per")]
    assert set(table) == {"a"}
    for k in range(3):
        per_seed = [np.mean([v[f"digit_{k}"] for c, v in values.items() if c.seed == seed and c.cls != k])
                    for seed in (0, 1)]
        assert table["a"][f"digit_{k}"] == f"{np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f}"
    text = summarise(s, {"cells_run": 12, "wall_seconds": 1.0, "jobs": 1, "threads_per_job": 1}, "cmd",
                     {"device_name": "cpu", "device": "cpu", "torch": "x", "commit": "c", "jobs": 1,
                      "threads_per_job": 1})
    assert "## per on digits (test.evaluators)" in text
    assert "| method | digit_0 | digit_1 | digit_2 |" in text    # sorted, as each cell lists them
    assert "| a | 0/1 | 10/11 | 20/21 |" in text       # each class's kept epoch, seed 0 / seed 1
    assert "| b |" not in text.split("the epoch kept by train.select_every")[1].split("\n## ")[0]
    assert "## Machines" not in text                     # one machine (here: none recorded) says nothing
    results[0].machine = "CPU X"
    text = summarise(Summary(suite, results, n_boot=20), {"cells_run": 12, "wall_seconds": 1.0, "jobs": 1,
                                                         "threads_per_job": 1}, "cmd",
                     {"device_name": "cpu", "device": "cpu", "torch": "x", "commit": "c", "jobs": 1,
                      "threads_per_job": 1})
    assert "The cells trained on CPU X (1 cell), not recorded (11 cells)." in text
    for r in results:       # every cell on one machine, summarised on another (restored from an archive)
        r.machine = "CPU X"
    text = summarise(Summary(suite, results, n_boot=20), {"cells_run": 0, "wall_seconds": 0.0, "jobs": 1,
                                                         "threads_per_job": 1}, "cmd",
                     {"device_name": "CPU Y", "device": "cpu", "torch": "x", "commit": "c", "jobs": 1,
                      "threads_per_job": 1})
    assert "The cells trained on CPU X; this summary was written on CPU Y from their scores." in text
    # a seed with a class unfinished gives no mean
    s2 = Summary(suite, [r for r in results if not (r.cell.method == "a" and r.cell.seed == 1 and r.cell.cls == 2)],
                 n_boot=20)
    assert "(1 seed)" in s2.evaluators()[("digits", "per")]["a"]["digit_0"]


def test_per_scorer_table_counts_a_seed_once_every_class_finished(tmp_path: Path) -> None:
    """The table of each scorer's image AUROC (two-stage's decoders, OLED's parts) follows the main table: per seed
    the mean over the dataset's classes, then mean ± std over the seeds where every class finished; a method with a
    class still to run shows `—`, not the mean of its finished classes."""
    from reconad.benchmark.summary import _per_scorer

    suite = parse_suite({"seeds": [0, 1], "methods": {"a": DIGITS, "b": DIGITS},
                         "datasets": {"digits": {"data": {"name": "digits"}, "classes": [0, 1, 2]}}},
                        str(tmp_path / "s.yaml"))
    rng = np.random.default_rng(5)
    values, results = {}, []
    for c in suite.cells():
        values[c] = {"full": float(rng.random()), "part": float(rng.random())}
        scorers = values[c] if c.method == "a" else {"only": values[c]["full"]}   # b: one scorer, no rows
        results.append(CellResult(c, "ok", {"image_auroc": values[c]["full"], "scorers": scorers}, 1.0, False,
                                  str(tmp_path)))

    def row(text: list[str], name: str) -> str:
        return next(line for line in text if line.startswith(f"| {name} |"))

    text = _per_scorer(Summary(suite, results, n_boot=0))
    assert not any(line.startswith("| b /") for line in text)
    for n in ("full", "part"):
        per_seed = [np.mean([v[n] for c, v in values.items() if c.method == "a" and c.seed == s]) for s in (0, 1)]
        assert row(text, f"a / {n}") == f"| a / {n} | {np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f} |"
    # seed 1 of class 2 still to run: seed 0 alone; then seed 0 of class 0 too: no seed has every class
    partial = [r for r in results if (r.cell.method, r.cell.seed, r.cell.cls) != ("a", 1, 2)]
    seed0 = np.mean([v["part"] for c, v in values.items() if c.method == "a" and c.seed == 0])
    assert row(_per_scorer(Summary(suite, partial, n_boot=0)), "a / part") == f"| a / part | {seed0:.4f} (1 seed) |"
    partial = [r for r in partial if (r.cell.method, r.cell.seed, r.cell.cls) != ("a", 0, 0)]
    assert row(_per_scorer(Summary(suite, partial, n_boot=0)), "a / part") == "| a / part | — |"
