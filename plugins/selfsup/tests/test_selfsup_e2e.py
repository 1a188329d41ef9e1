"""End to end: `reconad run configs/selfsup/objective3.yaml` (tiny), then `reconad selfsup evaluate RUN_DIR`
(through the CLI's entry function, in-process: a subprocess would re-import torch twice), which gives the rates
the config's `area_rule` evaluator wrote into metrics.json."""
from __future__ import annotations

import json
import os

import pytest

from reconad.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = ["--set", "data.image_size=16", "--set", "data.patch_size=16", "--set", "data.patch_stride=24",
        "--set", "train.steps=2", "--set", "train.progress=false", "--set", "train.device=cpu",
        "--set", "model.objective.progressive=[[0, 8], [0.5, 16]]", "--set", "test.report_images=2"]


def test_run_objective3_then_area_rule(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", os.path.join(ROOT, "configs", "selfsup", "objective3.yaml"), "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["pixel_auroc"] <= 1.0 and 0.0 <= metrics["aupro"] <= 1.0
    capsys.readouterr()
    assert main(["selfsup", "evaluate", str(out), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((out / "area_rule.json").read_text()) == result
    for key in ("image_tpr", "image_tnr", "image_mean", "image_f1", "pixel_tpr", "pixel_tnr", "pixel_mean"):
        assert result[key] is None or 0.0 <= result[key] <= 1.0, key
    assert result["min_area"] == round(0.005 * 16 * 16)
    # configs/selfsup/objective3.yaml lists test.evaluators: [area_rule]: the run measured the same rates
    measured = metrics["evaluators"]["area_rule"]
    assert set(measured) == {f"{lv}_{m}" for lv in ("image", "pixel") for m in ("tpr", "tnr", "mean", "f1")}
    assert measured == {k: (None if result[k] is None else pytest.approx(result[k], abs=1e-9))
                        for k in measured}
