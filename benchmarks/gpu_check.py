"""GPU acceptance in one call: build the CUDA kernels, run every CUDA test, benchmark the ops and a short run.

    python benchmarks/gpu_check.py                   # all steps, into $OUT or gpu_check_out/
    python benchmarks/gpu_check.py --quick           # steps 1-2 only: build + `pytest -m cuda`
    python benchmarks/gpu_check.py --dry-run --out D # every step's plumbing on the CPU with tiny shapes (a test)

Steps, in order of value per second (each writes its part as soon as it ends, so a cut run keeps what was done):

1. ``build``   ``pip install --no-build-isolation --no-deps --no-index -e .`` (and the plugins) with ``FORCE_CUDA=1``
               and ``TORCH_CUDA_ARCH_LIST`` set to the local GPU's arch, against the torch already installed; wheels
               in ``.whl/`` (or ``--wheels DIR``) are installed first, for packages that machine lacks. Then
               ``reconad info --json``: every op must run on ``cuda``.
2. ``pytest``  ``pytest -m cuda`` over tests/, plugins/ and examples/ (junit XML and log kept).
3. ``bench_*`` topk_mask and AUPRO (exact, 100 maps of 1024x1024 and 1725 of 256x256) and memory_address
               (op / eager / GEMM floor) at the shapes of the op issues; a short ``reconad run`` of the default
               config on the GPU (images/s, peak memory); torch.compile of memory_address last (slowest to build).
4. ``suite``   with ``--suite SUITE.yaml``: ``reconad benchmark`` on the GPU with the budget left as its
               ``--time-limit``, the finished cells kept in ``OUT/archive`` (``--suite-archive DIR`` is copied there
               first, so the cells it holds are skipped; copy the folder back into the repository after).
               ``--suite-only``: the build, ``info`` and this step alone.
5. ``summary`` each figure against its goal, printed and in ``gpu_check.json``.

Everything lands in one folder: ``gpu_check.json`` (every figure, per step), ``<step>.log``, ``pytest.xml``,
``info.json``, ``RESULTS.md`` (rows to append to benchmarks/RESULTS.md) and ``summary.txt``. ``--budget`` (seconds)
skips what would not finish in time, recording it as skipped.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # reconad.io's atomic writes work from the tree before step 1 has installed anything

# Goals of the op issues (#3 memory_address, #4 topk_mask, #5 metrics), on an H100-class GPU.
MEMORY_GOALS = {  # (N,K,C, dtype) -> (fwd ms, fwd+bwd ms)
    ("65536,2000,256", "bfloat16"): (0.45, 1.2),
    ("65536,2000,256", "float32"): (0.8, 2.2),      # TF32
    ("7168,2000,256", "bfloat16"): (None, 0.25),
}
TOPK_GOALS_US = {"256x28x28": 10, "64x64x64": 12, "64x128x128": 20, "32x256x256": 30, "8x512x512": 40}
AUPRO_EXACT_GOAL_MS = 15.0          # 100 maps of 1024x1024 from CUDA tensors
AUPRO_BINNED_GOAL_GPIX = 50.0


class Check:
    """The record: one entry per step, rewritten to ``gpu_check.json`` after every step."""

    def __init__(self, out: str, budget: float, env: dict[str, str], archive: str | None = None) -> None:
        self.out, self.budget, self.env, self.archive = out, budget, env, archive
        self.start = time.monotonic()
        self.steps: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def save(self) -> None:
        from reconad.io import write_json

        write_json(os.path.join(self.out, "gpu_check.json"), _plain({"meta": self.meta, "steps": self.steps}))
        if self.archive:  # the whole folder as one file, after every step: a cut run still brings back what it did
            from reconad.io import atomic_path

            own = os.path.basename(self.archive)
            skip_own = lambda info: None if os.path.basename(info.name).lstrip(".").startswith(own) else info  # noqa: E731
            with atomic_path(self.archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
                tar.add(self.out, arcname="gpu_check", filter=skip_own)

    def step(self, name: str, fn: Callable[[], dict[str, Any]], needs: float = 0.0) -> dict[str, Any]:
        """Run ``fn`` unless less than ``needs`` seconds are left; record its result, status and time."""
        if self.left() < needs:
            rec = {"status": "skipped", "why": f"budget: {self.left():.0f} s left, the step needs ~{needs:.0f} s"}
        else:
            t0 = time.monotonic()
            print(f"\n=== {name} ({self.left():.0f} s of budget left)", flush=True)
            try:
                rec = fn()
                rec.setdefault("status", "ok")
            except Exception as exc:  # noqa: BLE001 - one step failing must not cost the others
                rec = {"status": "error", "why": f"{type(exc).__name__}: {exc}"}
            rec["seconds"] = round(time.monotonic() - t0, 1)
            print(f"--- {name}: {rec['status']} in {rec['seconds']} s" + (f" ({rec['why']})" if "why" in rec else ""),
                  flush=True)
        self.steps[name] = rec
        self.save()
        return rec

    def sh(self, name: str, cmd: list[str], timeout: float | None = None, env: dict[str, str] | None = None,
           cwd: str = ROOT) -> subprocess.CompletedProcess:
        """Run ``cmd``, its output teed to ``<name>.log`` (and this console); cut at ``timeout`` or the budget."""
        limit = max(10.0, min(timeout or 1e9, self.left()))
        lines: list[str] = []
        with open(os.path.join(self.out, f"{name}.log"), "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **self.env, **(env or {})}, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)

            def pump() -> None:
                for line in proc.stdout:  # type: ignore[union-attr]
                    log.write(line)
                    log.flush()
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    lines.append(line)

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                reader.join(5)
                log.write(f"\n[gpu_check: killed after {limit:.0f} s]\n")
                return subprocess.CompletedProcess(cmd, 124, "".join(lines), "")
            reader.join()
        return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "")


def _plain(obj: Any) -> Any:
    """JSON-safe: NaN and infinities (a benchmark's 'not measured') become null, anything odd its str."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj if obj is None or isinstance(obj, (str, int, bool)) else str(obj)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# --- step 1: build and info ---------------------------------------------------------------------------------

def _cuda_arch() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


def step_build(ck: Check, args: argparse.Namespace) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    wheels = sorted(glob.glob(os.path.join(args.wheels, "*.whl"))) if args.wheels else []
    if wheels:
        r = ck.sh("build_wheels", [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                   "--no-compile", *wheels])
        rec["wheels"] = [os.path.basename(w) for w in wheels]
        if r.returncode:
            return {**rec, "status": "fail", "why": "installing the carried wheels failed: " + _tail(r.stdout, 3)}
    arch = _cuda_arch()
    env = {"FORCE_CUDA": "1", "MAX_JOBS": str(os.cpu_count() or 4)}
    env.setdefault("CUDA_HOME", os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    if arch:
        env["TORCH_CUDA_ARCH_LIST"] = arch
    targets = ["-e", "."] + [a for d in sorted(glob.glob(os.path.join(ROOT, "plugins", "*", "")) +
                                               glob.glob(os.path.join(ROOT, "examples", "*", "")))
                              for a in ("-e", os.path.relpath(d, ROOT))]
    r = ck.sh("build", [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                        *targets], env=env, timeout=args.build_timeout)
    rec.update({"arch": arch, "returncode": r.returncode, "env": env})
    if r.returncode:
        return {**rec, "status": "fail", "why": "pip install failed: " + _tail(r.stdout, 8)}
    return rec


def step_info(ck: Check, require_cuda: bool) -> dict[str, Any]:
    r = ck.sh("info", [sys.executable, "-m", "reconad.cli", "info", "--json"], timeout=300)
    if r.returncode:
        return {"status": "fail", "why": "reconad info failed: " + _tail(r.stdout, 5)}
    text = r.stdout[r.stdout.index("{"):]
    info = json.loads(text)
    from reconad.io import write_json

    write_json(os.path.join(ck.out, "info.json"), info)
    backends = {op: per["cuda"]["backend"] for op, per in info["ops"].items()}
    reasons = {op: per["cuda"]["reason"] for op, per in info["ops"].items()}
    rec = {"gpu": info.get("gpu"), "torch": info.get("torch"), "torch_cuda": info.get("torch_cuda"),
           "cuda_backends": backends, "cuda_reasons": reasons, "extension": info.get("extension")}
    not_cuda = [op for op, b in backends.items() if b != "cuda"]
    if require_cuda and not_cuda:
        rec.update(status="fail", why="not on cuda: " + ", ".join(f"{op} ({reasons[op]})" for op in not_cuda))
    return rec


# --- step 2: pytest -m cuda -------------------------------------------------------------------------------------

def _junit_counts(path: str) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                        if c.find("failure") is not None or c.find("error") is not None]
    return counts


def cuda_test_files() -> list[str]:
    """The test files that hold CUDA tests (collecting only those keeps the step short)."""
    found = []
    for top in ("tests", "plugins", "examples"):
        for path in sorted(glob.glob(os.path.join(ROOT, top, "**", "test_*.py"), recursive=True)):
            with open(path, encoding="utf-8") as fh:
                if "mark.cuda" in fh.read():
                    found.append(os.path.relpath(path, ROOT))
    return found


def step_pytest(ck: Check, paths: list[str], timeout: float, workers: int = 0) -> dict[str, Any]:
    xml = os.path.join(ck.out, "pytest.xml")
    parallel = ["-n", str(workers)] if workers and importlib.util.find_spec("xdist") else []
    r = ck.sh("pytest", [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider",
                         "-o", "addopts=", "--durations=10", f"--junitxml={xml}", *parallel, *paths], timeout=timeout)
    if not os.path.exists(xml):
        return {"status": "fail", "returncode": r.returncode, "why": "no junit report: " + _tail(r.stdout, 8)}
    rec: dict[str, Any] = {"returncode": r.returncode, "files": paths, **_junit_counts(xml)}
    if r.returncode not in (0, 5) or rec["failures"] or rec["errors"]:
        rec.update(status="fail", why=f"{rec['failures']} failed, {rec['errors']} errors")
    return rec


# --- step 3: benchmarks -------------------------------------------------------------------------------------------

def step_bench(ck: Check, name: str, bench: str, argv: list[str], timeout: float) -> dict[str, Any]:
    rows_path = os.path.join(ck.out, f"{name}.json")
    r = ck.sh(name, [sys.executable, os.path.join(HERE, "run.py"), "--json", rows_path, bench, "--", *argv],
              timeout=timeout)
    if r.returncode or not os.path.exists(rows_path):
        return {"status": "fail", "returncode": r.returncode, "why": _tail(r.stdout, 6)}
    with open(rows_path, encoding="utf-8") as fh:
        rows = json.load(fh)[bench]
    return {"rows": _plain(rows)}


CELL_LINE = re.compile(r"^\[\d+/\d+\] (?P<cell>.+?): (?:(?P<metric>\w+) (?P<value>[-\d.]+)|(?P<failed>FAILED: .*)) "
                       r"\((?P<seconds>\d+) s\)")


def step_suite(ck: Check, suite: str, extra: list[str], device: str, archive_from: str | None,
               margin: float = 30.0) -> dict[str, Any]:
    """``reconad benchmark`` in the budget left (``margin`` seconds kept for the summary and the archive)."""
    limit = ck.left() - margin
    if limit < margin:
        return {"status": "skipped", "why": f"budget: {ck.left():.0f} s left"}
    archive = os.path.join(ck.out, "archive")
    if archive_from:
        shutil.copytree(archive_from, archive, dirs_exist_ok=True)
    out = os.path.join(ck.out, "suite")
    cmd = [sys.executable, "-m", "reconad.cli", "benchmark", suite, "--out", out, "--archive", archive,
           "--device", device, "--time-limit", f"{limit:.0f}", *extra]
    r = ck.sh("suite", cmd, timeout=limit + margin)
    cells = []
    for line in r.stdout.splitlines():
        m = CELL_LINE.match(line)
        if m:
            cells.append({"cell": m["cell"], "seconds": int(m["seconds"]),
                          **({"error": m["failed"]} if m["failed"] else {m["metric"]: float(m["value"])})})
    left = re.search(r"--time-limit [\d:]+: (\d+) cell\(s\) not started", r.stdout)
    rec = {"suite": os.path.basename(suite), "time_limit_s": round(limit), "cells": cells,
           "not_started": int(left.group(1)) if left else 0, "summary": os.path.join(out, "summary.md")}
    if r.returncode:
        rec.update(status="fail", returncode=r.returncode, why=_tail(r.stdout, 6))
    return rec


def step_run(ck: Check, device: str, overrides: list[str], timeout: float) -> dict[str, Any]:
    path = os.path.join(ck.out, "run_probe.json")
    r = ck.sh("run", [sys.executable, os.path.abspath(__file__), "--probe-run", path, "--device", device,
                      *[a for o in overrides for a in ("--set", o)]], timeout=timeout)
    if r.returncode or not os.path.exists(path):
        return {"status": "fail", "returncode": r.returncode, "why": _tail(r.stdout, 8)}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def probe_run(path: str, device: str, overrides: list[str]) -> int:
    """A short ``reconad run`` in this process, timed: training images/s and the GPU's peak memory."""
    import torch

    from reconad.config import load_config
    from reconad.engine import run
    from reconad.io import write_json

    cfg = load_config(None, [f"train.device={device}", *overrides])
    out = os.path.join(os.path.dirname(path), "run")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = run(cfg, out, log=print)
    total = time.perf_counter() - t0
    tr = res.train
    n_train = len(tr.splits.train)
    epochs = tr.step / max(1, -(-n_train // cfg.train.batch_size))   # steps per epoch: ceil(n / batch)
    rec = {"config": cfg.name, "overrides": overrides, "device": device, "steps": tr.step,
           "train_images": n_train, "epochs": round(epochs, 2), "train_seconds": round(tr.seconds, 2),
           "images_per_s": round(epochs * n_train / max(tr.seconds, 1e-9), 1),
           "total_seconds": round(total, 2), "image_auroc": res.metrics and res.metrics.get("image_auroc"),
           "aupro": res.metrics and res.metrics.get("aupro"),
           "peak_MiB": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}
    write_json(path, rec)
    print(json.dumps(rec))
    return 0


# --- summary ---------------------------------------------------------------------------------------------------

def _verdict(value: float | None, goal: float | None, higher: bool = False) -> str:
    if value is None or goal is None:
        return "-"
    ok = value >= goal if higher else value <= goal
    return "MET" if ok else "missed"


def summarize(ck: Check) -> list[str]:
    s, lines = ck.steps, []
    lines.append(f"GPU acceptance: {ck.meta.get('gpu') or 'no GPU'}, torch {ck.meta.get('torch')}, "
                 f"commit {ck.meta.get('commit')}, {time.monotonic() - ck.start:.0f} s")
    for name, rec in s.items():
        lines.append(f"  {name:22s} {rec['status']:8s} {rec.get('seconds', '')!s:>6} s  {rec.get('why', '')[:150]}")
    info = s.get("info", {})
    if info.get("cuda_backends"):
        lines.append("ops on cuda: " + ", ".join(f"{k}={v}" for k, v in info["cuda_backends"].items()))
    pt = s.get("pytest", {})
    if "tests" in pt:
        lines.append(f"pytest -m cuda: {pt['passed']} passed, {pt['failures'] + pt['errors']} failed, "
                     f"{pt['skipped']} skipped" + (f"; failed: {', '.join(pt['failed'][:10])}" if pt["failed"] else ""))
    mem_rows = [r for k in ("bench_memory_address", "bench_memory_address_tf32", "bench_memory_compiled")
                for r in s.get(k, {}).get("rows", [])]
    if mem_rows:
        lines.append("memory_address (#3)     fwd ms / fwd+bwd ms  [goal]")
        for r in mem_rows:
            goal = MEMORY_GOALS.get((r["N,K,C"], r["dtype"])) if r["impl"].startswith("op") else None
            g = f"  [<= {goal[0]} / {goal[1]}: {_verdict(r['fwd_ms'], goal[0])} / {_verdict(r['fwd_bwd_ms'], goal[1])}]" \
                if goal else ""
            peak = "" if r.get("peak_MiB") is None else f"  {r['peak_MiB']:.0f} MiB"
            fb = "       -" if r.get("fwd_bwd_ms") is None else f"{r['fwd_bwd_ms']:8.3f}"
            lines.append(f"  {r['impl']:16s} {r['N,K,C']:16s} {r['dtype']:9s} {r['fwd_ms']:8.3f} / {fb}{peak}{g}")
    topk = [r for r in s.get("bench_topk_mask", {}).get("rows", []) if r["impl"] in ("topk_mask", "copy")]
    if topk:
        lines.append("topk_mask (#4) forward us  [goal]")
        for r in topk:
            goal = TOPK_GOALS_US.get(r["shape"]) if r["impl"] == "topk_mask" else None
            g = f"  [<= {goal}: {_verdict(r['us'], goal)}]" if goal else ""
            lines.append(f"  {r['impl']:10s} {r['shape']:12s} {r['us']:9.1f} us  {r['x_vs_kthvalue']:.1f}x kthvalue{g}")
    for key in ("bench_pro_curve", "bench_pro_curve_mvtec"):
        for r in s.get(key, {}).get("rows", []):
            goal, verdict = None, "-"
            if r["impl"].startswith("reconad (") and r["maps"] == "100x1024x1024":
                goal, verdict = f"<= {AUPRO_EXACT_GOAL_MS} ms", _verdict(r["ms"], AUPRO_EXACT_GOAL_MS)
            elif r["impl"] == "reconad-binned":
                gpix = r["Mpix"] / 1e3 / (r["ms"] / 1e3)
                goal, verdict = f">= {AUPRO_BINNED_GOAL_GPIX} Gpix/s: {gpix:.1f}", _verdict(gpix, AUPRO_BINNED_GOAL_GPIX, True)
            lines.append(f"AUPRO (#5) {r['impl']:18s} {r['maps']:14s} {r['ms']:9.2f} ms  aupro {r['aupro']:.4f}"
                         + (f"  [{goal}: {verdict}]" if goal else ""))
    suite = s.get("suite", {})
    if "cells" in suite:
        lines.append(f"suite {suite['suite']} (--time-limit {suite['time_limit_s']} s): {len(suite['cells'])} cell(s) "
                     f"ran, {suite['not_started']} not started")
        for c in suite["cells"]:
            value = c.get("error") or ", ".join(f"{k} {v:.4f}" for k, v in c.items() if k not in ("cell", "seconds"))
            lines.append(f"  {c['cell']}: {value} ({c['seconds']} s)")
    run = s.get("run", {})
    if "images_per_s" in run:
        lines.append(f"reconad run ({run['config']}, {run['epochs']} epochs on {run['device']}): "
                     f"{run['images_per_s']} images/s, peak {run['peak_MiB']} MiB, {run['total_seconds']} s in all, "
                     f"image AUROC {run['image_auroc']}")
    return lines


# --- main ------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "gpu_check_out"),
                   help="output folder (default: $OUT, else gpu_check_out/)")
    p.add_argument("--dry-run", action="store_true", help="CPU plumbing with tiny shapes: no build, nothing needs a GPU")
    p.add_argument("--quick", action="store_true", help="steps 1-2 only (build, info, pytest -m cuda)")
    p.add_argument("--skip-build", action="store_true", help="use the reconad already installed")
    p.add_argument("--budget", type=float, default=460.0, help="seconds for the whole check (default 460)")
    p.add_argument("--build-timeout", type=float, default=240.0)
    p.add_argument("--wheels", default=os.path.join(ROOT, ".whl"), help="install these wheels first (default .whl/)")
    p.add_argument("--commit", default=os.environ.get("RECONAD_COMMIT", ""), help="commit the tree was copied from")
    p.add_argument("--archive", default=None,
                   help="also keep the whole output folder as this .tar.gz, rewritten after every step (for a "
                        "machine that returns few files: --out /tmp/gc --archive $OUT/gpu_check.tar.gz)")
    p.add_argument("--suite", default=None, metavar="SUITE.yaml",
                   help="last: run this benchmark suite on the GPU in the budget left (finished cells: OUT/archive)")
    p.add_argument("--suite-arg", action="append", default=[], metavar="ARG",
                   help="passed on to reconad benchmark, e.g. --suite-arg=--seeds=0 (repeatable)")
    p.add_argument("--suite-archive", default=None, metavar="DIR",
                   help="a benchmark archive copied into OUT/archive first: its finished cells are skipped")
    p.add_argument("--suite-only", action="store_true", help="the build, info and --suite alone")
    p.add_argument("--probe-run", metavar="JSON", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.suite_only and not args.suite:
        p.error("--suite-only needs --suite SUITE.yaml")
    if args.suite_archive and not os.path.isdir(args.suite_archive):
        p.error(f"--suite-archive {args.suite_archive}: not a folder")
    if args.probe_run:
        return probe_run(args.probe_run, args.device, args.overrides)

    import torch

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible (use --dry-run for the CPU plumbing check)", file=sys.stderr)
        return 2
    dev = "cpu" if dry else "cuda"
    env = {"RECONAD_BENCH_RESULTS": os.path.join(out, "RESULTS.md"), "PYTHONUNBUFFERED": "1"}
    if args.commit:
        env["RECONAD_COMMIT"] = args.commit
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the plumbing must not need a GPU even where one is
    ck = Check(out, args.budget, env, os.path.abspath(args.archive) if args.archive else None)
    ck.meta = {"dry_run": dry, "commit": args.commit or None, "torch": torch.__version__,
               "gpu": None if dry else torch.cuda.get_device_name(0), "python": sys.version.split()[0],
               "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    ck.save()

    if not (dry or args.skip_build):
        if ck.step("build", lambda: step_build(ck, args))["status"] != "ok":
            print("gpu_check: the build failed; the steps below run on what is installed", flush=True)
    ck.step("info", lambda: step_info(ck, require_cuda=not dry))
    test_paths = ["tests/ops/test_topk_mask.py"] if dry else cuda_test_files()
    if not args.suite_only:
        ck.step("pytest", lambda: step_pytest(ck, test_paths, timeout=120 if dry else 240, workers=0 if dry else 4),
                needs=20)

    if not (args.quick or args.suite_only):
        if dry:
            topk = ["--shape", "4,8,8"]
            aupro = ["--maps", "3", "--size", "32", "--skip-official"]
            aupro_mvtec = ["--maps", "5", "--size", "16", "--skip-official"]
            mem = ["--shape", "256,20,8", "--dtype", "float32", "--impl", "op", "--impl", "infer", "--impl", "eager",
                   "--impl", "gemms"]
            mem_tf32: list[str] = []
            mem_compiled: list[str] = []
            run_over = ["train.epochs=1", "data.image_size=16", "data.patch_size=16", "data.patch_stride=48",
                        "model.encoder.channels=[8,16]", "model.memory.slots=10", "test.report_images=2"]
        else:
            topk, aupro = [], ["--skip-official"]
            aupro_mvtec = ["--maps", "1725", "--size", "256", "--skip-official"]
            mem = ["--shape", "65536,2000,256", "--shape", "7168,2000,256", "--dtype", "bfloat16",
                   "--impl", "op", "--impl", "infer", "--impl", "eager", "--impl", "gemms"]
            mem_tf32 = ["--shape", "65536,2000,256", "--dtype", "float32", "--tf32",
                        "--impl", "op", "--impl", "eager", "--impl", "gemms"]
            mem_compiled = ["--shape", "65536,2000,256", "--shape", "7168,2000,256", "--dtype", "bfloat16",
                            "--impl", "compiled"]
            run_over = ["train.epochs=10"]
        common = ["--device", dev]
        ck.step("bench_topk_mask", lambda: step_bench(ck, "bench_topk_mask", "topk_mask", [*common, *topk], 120),
                needs=15)
        ck.step("bench_pro_curve", lambda: step_bench(ck, "bench_pro_curve", "pro_curve", [*common, *aupro], 150),
                needs=30)
        ck.step("bench_memory_address", lambda: step_bench(ck, "bench_memory_address", "memory_address",
                                                           [*common, *mem], 150), needs=20)
        if mem_tf32:
            ck.step("bench_memory_address_tf32", lambda: step_bench(ck, "bench_memory_address_tf32", "memory_address",
                                                                    [*common, *mem_tf32], 90), needs=20)
        ck.step("run", lambda: step_run(ck, dev, run_over, 150), needs=40)
        ck.step("bench_pro_curve_mvtec", lambda: step_bench(ck, "bench_pro_curve_mvtec", "pro_curve", [*common, *aupro_mvtec],
                                                        120), needs=30)
        if mem_compiled:
            ck.step("bench_memory_compiled", lambda: step_bench(ck, "bench_memory_compiled", "memory_address",
                                                                [*common, *mem_compiled], 180), needs=60)

    if args.suite:
        ck.step("suite", lambda: step_suite(ck, os.path.abspath(args.suite), args.suite_arg, dev,
                                            args.suite_archive and os.path.abspath(args.suite_archive)), needs=90)

    lines = summarize(ck)
    from reconad.io import write_text

    write_text(os.path.join(out, "summary.txt"), "\n".join(lines) + "\n")
    ck.steps["summary"] = {"status": "ok", "lines": lines}
    ck.save()
    print("\n" + "\n".join(lines), flush=True)
    failed = [n for n, r in ck.steps.items() if r["status"] in ("fail", "error")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
