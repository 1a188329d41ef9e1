"""The built-in loggers: ``csv`` (history.csv in the run folder, always on), ``tensorboard`` (event files in
``<run>/tensorboard``; extra ``[tensorboard]``) and ``mlflow`` (a local file store in ``<run>/mlruns`` unless
``MLFLOW_TRACKING_URI`` names another; extra ``[mlflow]``)."""
from __future__ import annotations

import csv
import os
import time
from typing import Any, Sequence

from ..components import HistoryRow, Logger, LogRun
from ..io import atomic_write

__all__ = ["CsvLogger", "MlflowLogger", "TensorBoardLogger", "flatten_config"]


def _run_error(message: str) -> Exception:
    from ..engine.runtime import RunError   # lazily: the engine imports the plugins, which import this module

    return RunError(message)


def _missing_extra(logger: str, module: str, extra: str) -> Exception:
    return _run_error(f"train.loggers: the {logger} logger needs the {module} package, which is not installed; "
                      f"pip install 'reconad[{extra}]' (or remove {logger} from train.loggers)")


class CsvLogger(Logger):
    """history.csv in the run folder: one row per figure, appended and flushed as training goes."""

    def __init__(self) -> None:
        self._fh: Any = None
        self._writer: Any = None

    def start(self, run: LogRun) -> None:
        from ..engine.history import FIELDS, HISTORY

        path = os.path.join(run.out_dir, HISTORY)
        try:
            if run.resume_step is not None and os.path.isfile(path):
                self._truncate(path, run.resume_step)
            fresh = run.resume_step is None or not os.path.isfile(path)
            self._fh = open(path, "w" if fresh else "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise _run_error(f"cannot write the training history {path!r}: {exc.strerror or exc}; the run folder "
                             "must be writable") from None
        self._writer = csv.writer(self._fh)
        if fresh:
            self._writer.writerow(FIELDS)
            self._fh.flush()

    @staticmethod
    def _truncate(path: str, step: int) -> None:
        """Keep the rows up to the checkpoint's ``step``: the steps after it are trained (and logged) again."""
        from ..engine.history import FIELDS, read_history

        rows = [r for r in read_history(path) if r.step <= step]
        with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(FIELDS)
            w.writerows(_csv_row(r) for r in rows)

    def log(self, rows: Sequence[HistoryRow]) -> None:
        self._writer.writerows(_csv_row(r) for r in rows)
        self._fh.flush()   # a killed run keeps every row written so far

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _csv_row(r: HistoryRow) -> list[Any]:
    return [r.step, f"{r.epoch:.6g}", r.stage, r.scope, r.key, f"{r.value:.8g}"]


def _tag(r: HistoryRow) -> str:
    return f"{r.scope}/{r.key}"


class TensorBoardLogger(Logger):
    """TensorBoard event files in <run>/tensorboard (torch.utils.tensorboard), tag scope/key per figure."""

    def __init__(self) -> None:
        self._writer: Any = None

    def start(self, run: LogRun) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing_extra("tensorboard", "tensorboard", "tensorboard") from None
        folder = os.path.join(run.out_dir, "tensorboard")
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            # purge_step: events after the checkpoint's step, from the run that stopped, are dropped
            self._writer = SummaryWriter(folder, purge_step=None if run.resume_step is None else run.resume_step + 1)
        except OSError as exc:
            raise _run_error(f"cannot write TensorBoard event files to {folder!r}: {exc.strerror or exc}; the run "
                             "folder must be writable (or remove tensorboard from train.loggers)") from None

    def log(self, rows: Sequence[HistoryRow]) -> None:
        for r in rows:
            self._writer.add_scalar(_tag(r), r.value, global_step=r.step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys (``train.lr``); list items by index (``model.scorers.0.name``)."""
    out: dict[str, str] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)) and v:
            out.update(flatten_config(v, key + "."))   # type: ignore[arg-type]
        else:
            out[key] = str(v)
    return out


class MlflowLogger(Logger):
    """An MLflow run (<run>/mlruns unless MLFLOW_TRACKING_URI is set): params the resolved config, metrics scope/key.

    Params are the config's dotted keys; ``--resume`` continues the same MLflow run."""

    RUN_ID = "mlflow_run_id.txt"

    def __init__(self) -> None:
        self._client: Any = None
        self._run_id: str | None = None

    def start(self, run: LogRun) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing_extra("mlflow", "mlflow", "mlflow") from None
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:   # mlflow-skinny has no database backend: its file store, which MLflow 3 asks to opt into
            uri = "file:" + os.path.join(os.path.abspath(run.out_dir), "mlruns")
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        id_file = os.path.join(run.out_dir, self.RUN_ID)
        try:
            self._client = MlflowClient(tracking_uri=uri)
            if run.resume_step is not None and os.path.isfile(id_file):
                with open(id_file, encoding="utf-8") as fh:
                    self._run_id = fh.read().strip()
                self._client.update_run(self._run_id, status="RUNNING")
                return
            name = str(run.config.get("name") or "reconad")
            exp = self._client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self._client.create_experiment(name)
            self._run_id = self._client.create_run(exp_id, run_name=os.path.basename(os.path.abspath(run.out_dir))
                                                   ).info.run_id
            params = flatten_config(run.config)
            from mlflow.entities import Param

            keys = list(params)
            for i in range(0, len(keys), 100):   # MLflow takes at most 100 params per batch
                self._client.log_batch(self._run_id, params=[Param(k, params[k]) for k in keys[i:i + 100]])
            with atomic_write(id_file, "w", encoding="utf-8") as fh:
                fh.write(self._run_id + "\n")
        except Exception as exc:   # noqa: BLE001 - OSError, or MlflowException for a store it refuses
            raise _run_error(f"cannot write the MLflow run to {uri!r}: {getattr(exc, 'strerror', None) or exc}; "
                             "set MLFLOW_TRACKING_URI to a store you can write (or remove mlflow from "
                             "train.loggers)") from None

    def log(self, rows: Sequence[HistoryRow]) -> None:
        from mlflow.entities import Metric

        ms = int(time.time() * 1000)
        metrics = [Metric(_tag(r), r.value, ms, r.step) for r in rows]
        for i in range(0, len(metrics), 1000):
            self._client.log_batch(self._run_id, metrics=metrics[i:i + 1000])

    def close(self) -> None:
        if self._client is not None and self._run_id is not None:
            self._client.set_terminated(self._run_id)
            self._client = None
