"""Nothing lost, nothing misleading: interrupted runs resume to the weights of an uninterrupted one, run
folders are never mixed, a run folder that contradicts itself is one clear error, predictions come at the
input's resolution, and degenerate data or few held-out images are warned about."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from reconad.config import apply_overrides, validate
from reconad.engine import RunError, run
from reconad.engine.checkpoint import load_checkpoint


def _run(raw, out, **kw):
    return run(validate(raw), str(out), log=lambda s: None, **kw)


def _same_weights(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _start_train(raw, tmp_path, out):
    """``reconad train`` on ``raw`` in a subprocess with this process's thread count (same floating-point
    reductions as the in-process runs it is compared with)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    return subprocess.Popen([sys.executable, "-m", "reconad.cli", "train", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _long_raw(tiny_raw, *extra):
    # long enough that a signal sent once training has started lands before the end
    return apply_overrides(tiny_raw, ["train.steps=300", "train.batch_size=8", "test.report_images=2",
                                      "model.masker=random_block", *extra])


def test_sigterm_writes_a_checkpoint_and_prints_the_resume_command(tiny_raw, tmp_path):
    raw = _long_raw(tiny_raw, "train.checkpoint_minutes=0")
    out = tmp_path / "run"
    proc = _start_train(raw, tmp_path, out)
    for line in proc.stdout:   # the loop has started: its handlers are in place
        if line.startswith("training steps"):
            break
    assert "on Ctrl-C / SIGTERM" in line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    state = load_checkpoint(str(out))
    assert not state["finished"] and 0 < state["step"] < 300
    assert f"interrupted by SIGTERM at step {state['step']}/300" in err
    assert f"resume with: reconad train {tmp_path / 'cfg.yaml'} --out {out} --resume" in err
    resumed = _run(raw, out, resume=True, test=False)
    full = _run(raw, tmp_path / "full", test=False)
    assert resumed.train.step == 300
    _same_weights(full.train.model, resumed.train.model)


def test_sigkill_after_a_periodic_checkpoint_resumes_to_the_same_weights(tiny_raw, tmp_path):
    raw = _long_raw(tiny_raw, "train.checkpoint_minutes=0.0005")   # every 30 ms
    out = tmp_path / "run"
    proc = _start_train(raw, tmp_path, out)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    state = load_checkpoint(str(out))
    assert not state["finished"], "the run ended before it was killed: make it longer"
    resumed = _run(raw, out, resume=True, test=False)
    full = _run(raw, tmp_path / "full", test=False)
    _same_weights(full.train.model, resumed.train.model)


def test_resume_without_a_checkpoint_names_the_settings(tiny_raw, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RunError, match=r"no checkpoint to resume from .*train\.checkpoint_minutes \(now 5\.0\)"):
        _run(tiny_raw, tmp_path / "run", resume=True)


def test_negative_checkpoint_period_is_a_config_error(tiny_raw):
    from reconad.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.checkpoint_minutes: expected >= 0 \(0: off\), got -1"):
        validate(apply_overrides(tiny_raw, ["train.checkpoint_minutes=-1"]))


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2"])
    out = tmp_path / "run"
    _run(raw, out)
    before = {f: (out / f).stat().st_mtime_ns for f in os.listdir(out)}
    with pytest.raises(RunError, match=r"already holds a finished run; pass --resume to continue it, "
                                       r"--overwrite to replace it"):
        _run(apply_overrides(raw, ["model.memory.slots=30"]), out)
    assert {f: (out / f).stat().st_mtime_ns for f in os.listdir(out)} == before, "the old run was touched"
    # a failing resume with another model leaves the old config.yaml as it was
    with pytest.raises(Exception, match="another model config"):
        _run(apply_overrides(raw, ["model.memory.slots=30"]), out, resume=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["memory"]["slots"] == 20
    # --overwrite: the new run alone, none of the old run's files
    (out / "old-note.txt").write_text("from the old run")
    _run(apply_overrides(raw, ["model.memory.slots=30"]), out, test=False, overwrite=True)
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.yaml"]
    assert load_checkpoint(str(out))["config"]["model"]["memory"]["slots"] == 30
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "the replaced run was left behind"


def test_a_folder_with_other_files_is_refused_even_with_overwrite(tiny_raw, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(RunError, match=r"is not empty and holds no reconad run \(notes.txt\)"):
            _run(tiny_raw, out, **kw)
    assert os.listdir(out) == ["notes.txt"]


def test_cli_overwrite_and_unwritable_out(tiny_raw, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(apply_overrides(tiny_raw, ["train.steps=1"])))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = subprocess.run([sys.executable, "-m", "reconad.cli", "train", str(cfg), "--out", str(blocker / "x")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"reconad train: error: cannot create the output folder {str(blocker / 'x')!r}: Not a directory; "
        "pass a writable --out"]
