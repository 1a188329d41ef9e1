"""benchmarks/gpu_check.py, the one-call GPU acceptance: its --dry-run runs every step's plumbing on the CPU
(so the script cannot rot while no GPU is around), and its summary judges figures against the op issues' goals."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_its_record(tmp_path):
    results = os.path.join(ROOT, "benchmarks", "RESULTS.md")
    before = _digest(results)
    out = tmp_path / "out"
    archive = out / "all.tar.gz"   # inside the folder it packs: it must not pack itself
    proc = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out), "--commit", "abc1234",
                           "--archive", str(archive)],
                          capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "gpu_check.json").read_text())
    steps = record["steps"]
    expected = ["info", "pytest", "bench_topk_mask", "bench_pro_curve", "bench_memory_address", "run", "bench_pro_curve_mvtec",
                "summary"]
    assert list(steps) == expected
    assert all(steps[s]["status"] == "ok" for s in expected), {s: steps[s].get("why") for s in expected}
    assert record["meta"]["dry_run"] is True and record["meta"]["commit"] == "abc1234"
    # every op has a backend on the CPU; the pytest step ran (its CUDA tests skip here) and left its junit report
    assert set(steps["info"]["cuda_backends"]) >= {"memory_address", "topk_mask", "pro_curve"}
    assert steps["pytest"]["tests"] > 0 and steps["pytest"]["failures"] == steps["pytest"]["errors"] == 0
    assert (out / "pytest.xml").is_file() and (out / "info.json").is_file()
    # each benchmark's rows come back as data, and its RESULTS.md row went to the output folder, not the repo's
    assert {r["impl"] for r in steps["bench_topk_mask"]["rows"]} >= {"copy", "kthvalue", "topk_mask"}
    assert {r["impl"].split(" ")[0] for r in steps["bench_memory_address"]["rows"]} == {"op", "infer", "eager", "gemms"}
    assert any(r["impl"] == "reconad-binned" for r in steps["bench_pro_curve"]["rows"])
    rows = (out / "RESULTS.md").read_text()
    assert rows.count("abc1234") == 4 and "topk_mask" in rows and "memory_address" in rows
    assert _digest(results) == before
    run = steps["run"]
    assert run["steps"] > 0 and run["images_per_s"] > 0 and run["peak_MiB"] is None
    assert (out / "run" / "report.html").is_file()
    summary = (out / "summary.txt").read_text()
    assert "pytest -m cuda:" in summary and "memory_address (#3)" in summary and "reconad run" in summary
    assert proc.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"gpu_check/gpu_check.json", "gpu_check/summary.txt", "gpu_check/pytest.xml", "gpu_check/run/report.html"} <= names
    assert not [n for n in names if "all.tar.gz" in n]


def test_budget_skips_steps_and_says_why(tmp_path):
    mod = _module()
    ck = mod.Check(str(tmp_path), budget=5.0, env={})
    ran = ck.step("cheap", lambda: {"x": 1}, needs=1)
    skipped = ck.step("costly", lambda: pytest.fail("must not run"), needs=60)
    broken = ck.step("broken", lambda: 1 / 0)
    assert ran["status"] == "ok" and ran["x"] == 1
    assert skipped["status"] == "skipped" and "needs ~60 s" in skipped["why"]
    assert broken["status"] == "error" and "ZeroDivisionError" in broken["why"]
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert list(saved) == ["cheap", "costly", "broken"]


def test_summary_judges_each_figure_against_its_goal(tmp_path):
    mod = _module()
    ck = mod.Check(str(tmp_path), budget=100.0, env={})
    row = {"N,K,C": "65536,2000,256", "dtype": "bfloat16", "peak_MiB": 10.0}
    ck.steps = {
        "bench_memory_address": {"status": "ok", "rows": [
            {**row, "impl": "op (cuda)", "fwd_ms": 0.40, "fwd_bwd_ms": 1.5},
            {**row, "impl": "eager", "fwd_ms": 3.0, "fwd_bwd_ms": 11.0},
            {**row, "impl": "infer (cuda)", "fwd_ms": 0.2, "fwd_bwd_ms": None}]},
        "bench_topk_mask": {"status": "ok", "rows": [
            {"impl": "topk_mask", "shape": "256x28x28", "us": 9.0, "x_vs_kthvalue": 4.0},
            {"impl": "topk_mask", "shape": "8x512x512", "us": 41.0, "x_vs_kthvalue": 4.0}]},
        "bench_pro_curve": {"status": "ok", "rows": [
            {"impl": "reconad (cuda)", "maps": "100x1024x1024", "Mpix": 104.9, "ms": 12.0, "aupro": 0.5},
            {"impl": "reconad-binned", "maps": "100x1024x1024", "Mpix": 104.9, "ms": 4.0, "aupro": 0.5}]},
    }
    text = "\n".join(mod.summarize(ck))
    assert "[<= 0.45 / 1.2: MET / missed]" in text            # fwd met, fwd+bwd missed
    assert "eager            65536,2000,256   bfloat16     3.000 /   11.000  10 MiB" in text
    assert "infer (cuda)     65536,2000,256   bfloat16     0.200 /        -  10 MiB" in text
    assert "256x28x28          9.0 us  4.0x kthvalue  [<= 10: MET]" in text
    assert "8x512x512         41.0 us  4.0x kthvalue  [<= 40: missed]" in text
    assert "[<= 15.0 ms: MET]" in text
    assert "Gpix/s: 26.2: missed]" in text                    # 104.9 Mpix in 4 ms


@pytest.mark.slow
def test_suite_step_runs_a_benchmark_in_the_budget_left_and_goes_on_from_an_archive(tmp_path):
    """--suite: the quick suite's memae cells into OUT/archive; a second check given that archive
    (--suite-archive) skips them and runs the rest; a budget too small for the step skips it, saying why."""
    mod = _module()
    quick = os.path.join(ROOT, "benchmarks", "suites", "quick.yaml")
    for name in "abc":
        (tmp_path / name).mkdir()
    first = mod.Check(str(tmp_path / "a"), budget=600.0, env={})
    rec = first.step("suite", lambda: mod.step_suite(first, quick, ["--quick", "--methods", "memae"], "cpu", None))
    assert rec["status"] == "ok", rec.get("why")
    assert [c["cell"] for c in rec["cells"]] == ["memae digits/0 seed 0", "memae brick seed 0"]
    assert all(0 <= c["image_auroc"] <= 1 for c in rec["cells"]) and rec["not_started"] == 0
    archived = tmp_path / "a" / "archive"
    assert len(list(archived.rglob("seed0.json"))) == 2
    second = mod.Check(str(tmp_path / "b"), budget=600.0, env={})
    rec = second.step("suite", lambda: mod.step_suite(second, quick, ["--quick"], "cpu", str(archived)))
    assert [c["cell"] for c in rec["cells"]] == ["cae digits/0 seed 0", "cae brick seed 0"]
    assert "4 of 4 cells finished" in (tmp_path / "b" / "suite.log").read_text()
    assert len(list((tmp_path / "b" / "archive").rglob("seed0.json"))) == 4
    lines = "\n".join(mod.summarize(second))
    assert "suite quick.yaml (--time-limit " in lines and "2 cell(s) ran, 0 not started" in lines
    assert "  cae brick seed 0: image_auroc " in lines
    tight = mod.Check(str(tmp_path / "c"), budget=40.0, env={})
    assert mod.step_suite(tight, quick, ["--quick"], "cpu", None)["status"] == "skipped"
