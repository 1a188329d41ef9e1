"""Loggers: a plugin's logger receives exactly the rows of history.csv; TensorBoard's event files and the MLflow
run hold the same figures (read back with tensorboard's EventAccumulator and mlflow's client) and MLflow's
params are the resolved config; a missing package names its pip extra; an unwritable destination is one
error before training."""
from __future__ import annotations

import os
import sys

import pytest
import yaml

from reconad import hookimpl
from reconad.components import Logger
from reconad.config import apply_overrides, validate
from reconad.engine import RunError, run
from reconad.engine.history import read_history
from reconad.plugins import build_registry, get_registry, make_plugin_manager

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::FutureWarning")


def _tiny(tiny_raw, *sets):
    return apply_overrides(tiny_raw, ["train.steps=6", "train.batch_size=8", "train.log_every_steps=2", *sets])


def _figures(rows):
    return {(f"{r.scope}/{r.key}", r.step): r.value for r in rows}


class ListLogger(Logger):
    runs: list = []

    def __init__(self):
        self.rows, self.closed = [], False
        ListLogger.runs.append(self)

    def start(self, run):
        self.run = run

    def log(self, rows):
        self.rows.extend(rows)

    def close(self):
        self.closed = True


class ListPlugin:
    @hookimpl
    def reconad_register_loggers(self, register):
        register("list", ListLogger)


def test_a_plugin_logger_receives_the_rows_of_history_csv(tiny_raw, tmp_path):
    registry = build_registry(make_plugin_manager([ListPlugin()], entry_points=False))
    assert registry.get("logger", "list").plugin == "ListPlugin"
    ListLogger.runs = []
    cfg = validate(_tiny(tiny_raw, "train.loggers=[list]"), registry)
    run(cfg, str(tmp_path / "run"), registry=registry, test=False, log=lambda s: None)
    (logger,) = ListLogger.runs
    assert logger.closed and logger.run.out_dir == str(tmp_path / "run") and logger.run.resume_step is None
    assert logger.run.config == yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    history = read_history(str(tmp_path / "run"))
    assert len(history) > 0 and [r[:5] for r in logger.rows] == [r[:5] for r in history]
    assert [r.value for r in logger.rows] == pytest.approx([r.value for r in history], rel=1e-6)


def test_tensorboard_event_files_hold_the_history(tiny_raw, tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run(validate(_tiny(tiny_raw, "train.loggers=[csv,tensorboard]")), str(out), test=False, log=lambda s: None)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    got = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    want = _figures(read_history(str(out)))
    assert got.keys() == want.keys() and "train/loss" in acc.Tags()["scalars"]
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k


def _flat(value, prefix=""):
    """The resolved config as MLflow params, by a loop of its own: dotted keys, list items by index."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: str(value)}


def test_mlflow_run_holds_the_metrics_and_the_resolved_config(tiny_raw, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    raw = _tiny(tiny_raw, "train.loggers=[mlflow]", "train.steps=4")
    run(validate(raw), str(out), test=False, log=lambda s: None, stop_after_steps=3)
    run(validate(raw), str(out), test=False, log=lambda s: None, resume=True)   # the same MLflow run continues
    client = MlflowClient(tracking_uri="file:" + str(out / "mlruns"))
    (exp,) = [e for e in client.search_experiments() if e.name == "tiny"]
    (mr,) = client.search_runs([exp.experiment_id])
    assert mr.info.status == "FINISHED"
    assert mr.data.params == _flat(yaml.safe_load((out / "config.yaml").read_text()))
    want = _figures(read_history(str(out)))
    got = {}
    for key in mr.data.metrics:
        for m in client.get_metric_history(mr.info.run_id, key):
            got[(key, m.step)] = m.value
    assert got.keys() == want.keys() and ("train/loss", 4) in got
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k


@pytest.mark.parametrize("logger, module, extra", [("tensorboard", "torch.utils.tensorboard", "tensorboard"),
                                                   ("mlflow", "mlflow.tracking", "mlflow")])
def test_a_missing_package_names_its_extra(tiny_raw, tmp_path, monkeypatch, logger, module, extra):
    monkeypatch.setitem(sys.modules, module, None)   # import fails as if the package were not installed
    with pytest.raises(RunError, match=rf"the {logger} logger needs the {extra} package, which is not installed; "
                                       rf"pip install 'reconad\[{extra}\]'"):
        run(validate(_tiny(tiny_raw, f"train.loggers=[{logger}]")), str(tmp_path / "run"), test=False,
            log=lambda s: None)
    assert not (tmp_path / "run").exists()   # nothing trained: no folder left


def test_an_unwritable_tensorboard_folder_is_one_error_before_training(tiny_raw, tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from reconad.engine.runtime import setup_runtime
    from reconad.engine.trainer import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("a file where the folder goes")   # root writes anywhere: block it so
    cfg = validate(_tiny(tiny_raw, "train.loggers=[csv,tensorboard]"))
    with pytest.raises(RunError, match=r"cannot write TensorBoard event files to '.*tensorboard'"):
        train(cfg, str(out), setup_runtime("cpu"), get_registry(), log=lambda s: None)
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_run_folder_is_one_error_before_training(tiny_raw, tmp_path):
    from reconad.engine.runtime import setup_runtime
    from reconad.engine.trainer import train

    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(RunError, match=r"cannot write the training history"):
            train(validate(_tiny(tiny_raw)), str(out), setup_runtime("cpu"), get_registry(), log=lambda s: None)
    finally:
        out.chmod(0o755)


LOGGERS = [s for s in get_registry() if s.kind == "logger"]


@pytest.mark.parametrize("spec", LOGGERS, ids=[s.name for s in LOGGERS])
def test_logger_contract(spec, tmp_path, tiny_raw, monkeypatch):
    """Every registered logger (built-in or installed plugin): a Logger that starts in a fresh run folder, takes
    rows, closes, and starts again on resume; a missing package is a RunError naming what to install."""
    from reconad.components import HistoryRow, LogRun

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = yaml.safe_load(yaml.safe_dump(tiny_raw))
    rows = [HistoryRow(2, 0.5, "train", "train", "loss", 0.25), HistoryRow(4, 1.0, "train", "val", "auroc", 0.75)]
    for resume_step in (None, 2):
        logger = spec.build()
        assert isinstance(logger, Logger)
        try:
            logger.start(LogRun(str(tmp_path), config, resume_step))
        except RunError as exc:
            if "pip install" in str(exc):
                pytest.skip(str(exc))
            raise
        logger.log(rows)
        logger.close()
