"""benchmarks/rescore.py: a trained cell scored again with a scorer setting equals the cell run with that setting
(one machine trains a cell the same twice), and what it cannot rescore is said."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from reconad.benchmark import load_suite
from reconad.benchmark.runner import run_cells

ROOT = Path(__file__).resolve().parents[1]
TWOSTAGE = str(ROOT / "configs" / "twostage" / "twostage.yaml")
TINY = {"train.steps": 4, "train.batch_size": 16, "test.report_images": 2, "model.encoder.width": 4,
        "model.decoder.width": 4, "model.objective.pretrain_steps": 2}


def _module():
    spec = importlib.util.spec_from_file_location("rescore", ROOT / "benchmarks" / "rescore.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_a_rescored_cell_equals_the_cell_run_with_the_setting(tmp_path: Path, capsys) -> None:
    raw = {"name": "tiny", "baseline": "twostage", "seeds": [0],
           "methods": {"twostage": {"config": TWOSTAGE, "set": TINY},
                       "balanced": {"config": TWOSTAGE, "set": {**TINY, "model.scorers.0.balance": "holdout"}}},
           "datasets": {"digits": {"data": {"name": "digits", "image_size": 16, "anomalies_per_class": 5,
                                            "holdout_fraction": 0.2}, "classes": [3]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    suite = load_suite(str(tmp_path / "s.yaml"))
    out = tmp_path / "b"
    results, _ = run_cells(suite, suite.cells(device="cpu"), str(out), log=lambda s: None)
    assert [r.status for r in results] == ["ok", "ok"]
    auroc = {r.cell.method: r.metrics["image_auroc"] for r in results}
    plain, balanced = auroc["twostage"], auroc["balanced"]
    assert plain != balanced
    mod = _module()
    rows = tmp_path / "rows.json"
    assert mod.main([str(out), "--method", "twostage", "--set", "balance=holdout", "--json", str(rows)]) == 0
    (row,) = json.loads(rows.read_text())
    assert row["image_auroc"] == pytest.approx(plain, abs=1e-12)
    assert row["rescored"] == pytest.approx(balanced, abs=1e-9)
    printed = capsys.readouterr().out
    assert f"twostage{os.sep}digits{os.sep}3{os.sep}seed0: {plain:.4f} -> {balanced:.4f}" in printed
    assert mod.main([str(out), "--method", "nothing"]) == 2
    assert "no cell of 'nothing' with a checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="balance must be one of"):
        mod.main([str(out), "--method", "twostage", "--set", "balance=sometimes"])
