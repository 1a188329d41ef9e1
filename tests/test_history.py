"""history.csv: the rows a run writes (loss terms averaged over the steps each row covers, checked against the
losses each step returned), one stage per row, validation AUROC, and a killed run that resumes to the history
of an uninterrupted one with no row lost or repeated."""
from __future__ import annotations

import csv
import os
import time

import numpy as np
import pytest
import torch

from reconad import hookimpl
from reconad.builtin import ReconstructionObjective
from reconad.config import apply_overrides, validate
from reconad.engine import RunError, run
from reconad.engine.checkpoint import load_checkpoint
from reconad.engine.history import FIELDS, read_history
from reconad.plugins import build_registry, make_plugin_manager

from test_reliability import _start_train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class RecordingObjective(ReconstructionObjective):
    """The built-in loss, recording every step's terms; stage ``a`` for the first 3 steps, then ``b``."""

    steps: list[dict[str, float]] = []

    def training_step(self, ctx, batch):
        logs = super().training_step(ctx, batch)
        RecordingObjective.steps.append(logs)
        return logs

    def stage(self, step_index, steps_per_epoch):
        return "a" if step_index < 3 else "b"


class Recording:
    @hookimpl
    def reconad_register_objectives(self, register):
        register("recording", RecordingObjective)


def _run(raw, out, **kw):
    return run(validate(raw), str(out), log=lambda s: None, test=False, **kw)


def _table(rows, drop=("images_per_s",)):
    return {(r.step, r.stage, r.scope, r.key): r.value for r in rows if r.key not in drop}


def test_rows_average_the_steps_they_cover_and_never_mix_stages(tiny_raw, tmp_path):
    registry = build_registry(make_plugin_manager([Recording()], entry_points=False))
    raw = apply_overrides(tiny_raw, ["train.steps=8", "train.batch_size=8", "train.log_every_steps=5",
                                     "train.lr=0.002", "model.objective=recording"])
    RecordingObjective.steps = []
    cfg = validate(raw, registry)
    res = run(cfg, str(tmp_path / "run"), registry=registry, test=False, log=lambda s: None)
    steps_per_epoch = len(res.train.splits.train) // 8
    assert steps_per_epoch > 8   # one partial epoch: its row comes at the end
    logs = RecordingObjective.steps
    assert len(logs) == 8
    with open(tmp_path / "run" / "history.csv", newline="") as fh:
        assert next(csv.reader(fh)) == FIELDS
    rows = read_history(str(tmp_path / "run"))
    # windows: steps 1-3 close at the change of stage (a), 4-5 at the 5-step mark, 6-8 at the end (b)
    expect = {}
    for scope, spans in (("train", [(1, 3, "a"), (4, 5, "b"), (6, 8, "b")]), ("epoch", [(1, 3, "a"), (4, 8, "b")])):
        for lo, hi, stage in spans:
            for key in logs[0]:
                expect[(hi, stage, scope, key)] = float(np.mean([logs[i - 1][key] for i in range(lo, hi + 1)]))
            expect[(hi, stage, scope, "lr")] = 0.002
    got = _table(rows)
    assert got.keys() == expect.keys()
    for k, v in expect.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k
    for r in rows:
        assert r.epoch == pytest.approx(r.step / steps_per_epoch, abs=1e-6)
    rates = [r for r in rows if r.key == "images_per_s"]
    assert len(rates) == 5 and all(r.value > 0 for r in rates)


def _digits(tmp_path, *sets):
    from reconad.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = ["data.image_size=16", "train.batch_size=16", "train.progress=false", "model.encoder.channels=[8,16]",
            "model.memory.slots=20", "data.validation_normals=8", "data.validation_anomalies_per_class=1"]
    cfg = load_config(os.path.join(root, "configs", "digits.yaml"), base + list(sets))
    res = run(cfg, str(tmp_path / "run"), test=False, log=lambda s: None)
    return res, [r for r in read_history(str(tmp_path / "run")) if r.scope == "val"]


@pytest.mark.parametrize("select_every", [0, 1])
def test_validation_auroc_rows_match_sklearn(tmp_path, select_every):
    """A labelled validation split gives a row per epoch and at the end; with model selection, its scorings."""
    from sklearn.metrics import roc_auc_score

    from reconad.engine.evaluate import score_dataset

    res, val = _digits(tmp_path, "train.steps=2", f"train.select_every={select_every}")
    s = score_dataset(res.train.model, res.train.splits.validation, torch.device("cpu"), 64, keep_maps=False,
                      keep_masks=False)
    assert [(r.step, r.scope, r.key) for r in val] == [(2, "val", "auroc")]
    assert val[0].value == pytest.approx(roc_auc_score(s.labels, s.primary), rel=1e-6)
    if select_every:
        assert [p["validation_auroc"] for p in res.train.selection["history"]] == pytest.approx([val[0].value])


def test_a_resumed_run_continues_the_history_of_an_uninterrupted_one(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=12", "train.batch_size=8", "train.log_every_steps=5"])
    _run(raw, tmp_path / "cut", stop_after_steps=7)
    assert max(r.step for r in read_history(str(tmp_path / "cut"))) == 5
    _run(raw, tmp_path / "cut", resume=True)
    _run(raw, tmp_path / "full")
    cut, full = read_history(str(tmp_path / "cut")), read_history(str(tmp_path / "full"))
    assert [r[:5] for r in cut] == [r[:5] for r in full]
    got, want = _table(cut), _table(full)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5), k


def test_a_killed_run_drops_the_rows_after_its_checkpoint_on_resume(tiny_raw, tmp_path):
    raw = apply_overrides(tiny_raw, ["train.steps=30", "train.batch_size=8", "train.log_every_steps=2",
                                     "train.checkpoint_every=10", "train.checkpoint_minutes=0"])
    out = tmp_path / "run"
    proc = _start_train(raw, tmp_path, out)
    history = out / "history.csv"
    deadline = time.monotonic() + 120
    # kill once rows past the first checkpoint (step 10) are written, before the next one (step 20)
    while proc.poll() is None and time.monotonic() < deadline:
        if history.exists() and any(r.step >= 12 for r in read_history(str(out))):
            break
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    state = load_checkpoint(str(out))
    assert not state["finished"], "the run ended before it was killed: make it longer"
    before = read_history(str(out))
    assert max(r.step for r in before) > state["step"], "no row after the checkpoint: the kill came too late"
    _run(raw, out, resume=True)
    _run(raw, tmp_path / "full")
    resumed, full = read_history(str(out)), read_history(str(tmp_path / "full"))
    assert [r[:5] for r in resumed] == [r[:5] for r in full]   # no row lost, none repeated
    got, want = _table(resumed), _table(full)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5), k


def test_an_unwritable_history_is_one_error_before_training(tiny_raw, tmp_path):
    from reconad.engine.runtime import setup_runtime
    from reconad.engine.trainer import train
    from reconad.plugins import get_registry

    out = tmp_path / "run"
    (out / "history.csv").mkdir(parents=True)   # root may write anywhere: a folder in the way cannot be opened
    cfg = validate(apply_overrides(tiny_raw, ["train.steps=2", "train.batch_size=8"]))
    with pytest.raises(RunError, match=r"cannot write the training history '.*history\.csv'"):
        train(cfg, str(out), setup_runtime("cpu"), get_registry(), log=lambda s: None)
    assert sorted(os.listdir(out)) == ["history.csv"]   # no checkpoint: nothing trained


def test_read_history_names_the_file_and_the_expected_header(tmp_path):
    bad = tmp_path / "history.csv"
    bad.write_text("step,loss\n1,0.5\n")
    with pytest.raises(RunError, match=r"history\.csv: not a reconad history: expected the header "
                                       r"step,epoch,stage,scope,key,value, got 'step,loss'"):
        read_history(str(bad))
    bad.write_text(",".join(FIELDS) + "\n1,0.1,train,train,loss\n")
    with pytest.raises(RunError, match=r"history\.csv, line 2: expected 6 fields"):
        read_history(str(tmp_path))


def test_log_every_steps_must_be_positive(tiny_raw):
    from reconad.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.log_every_steps: expected steps >= 1, got 0"):
        validate(apply_overrides(tiny_raw, ["train.log_every_steps=0"]))


def test_an_unknown_logger_is_one_line_with_did_you_mean(tiny_raw, tmp_path, capsys):
    import yaml

    from reconad.cli import main

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tiny_raw))
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "cfg.yaml"), "--out", str(out), "--set", "train.loggers=[csv,tensorbord]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reconad train: error: train.loggers: unknown logger 'tensorbord'; available: csv, mlflow, "
                   "tensorboard; did you mean 'tensorboard'?"]
    assert not out.exists()


def test_report_shows_the_curves_and_reconad_report_rebuilds_it(tiny_raw, tmp_path, capsys):
    import re

    from reconad.cli import main

    out = tmp_path / "run"
    run(validate(apply_overrides(tiny_raw, ["train.steps=4", "train.batch_size=8", "train.log_every_steps=2",
                                            "test.report_images=2"])), str(out), log=lambda s: None)
    page = (out / "report.html").read_text()
    assert '<img src="curves.png" alt="curves">' in page
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {f: os.stat(out / f).st_mtime_ns for f in ("checkpoint.pt", "scores.csv", "metrics.json", "grid.png")}
    (out / "report.html").unlink()
    (out / "curves.png").unlink()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"report: {out / 'report.html'}", f"curves: {out / 'curves.png'}"]
    assert (out / "curves.png").is_file()
    assert {f: os.stat(out / f).st_mtime_ns for f in before} == before   # nothing scored or trained again
    # the same page: scores.csv keeps 8 digits where the page's sort keys had 10
    strip = lambda text: re.sub(r"data-v='[^']*'", "", text)   # noqa: E731
    assert strip((out / "report.html").read_text()) == strip(page)


def test_reconad_report_on_a_train_only_folder_names_what_is_missing(tiny_raw, tmp_path, capsys):
    from reconad.cli import main

    out = tmp_path / "run"
    _run(apply_overrides(tiny_raw, ["train.steps=2", "train.batch_size=8"]), out)
    capsys.readouterr()                                   # training's own lines
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"reconad report: error: {str(out)!r} lacks metrics.json, scores.csv; expected a "
                   "tested run folder (the --out of `reconad run`, or `reconad test RUN` after `reconad train`)")
