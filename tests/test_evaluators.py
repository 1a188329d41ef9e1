"""``test.evaluators``: a plugin's evaluator is validated with the config, checked against the model before
training, and its numbers land in metrics.json (equal to the same measure recomputed from scores.csv), the
report and the resolved config (so ``reconad test`` measures them again); bad evaluators are one clear error;
every registered evaluator builds from its defaults."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reconad import hookimpl
from reconad.components import Evaluator
from reconad.config import ConfigError, apply_overrides, to_dict, validate, validate_resolved
from reconad.engine import RunError, evaluate_checkpoint, run
from reconad.plugins import build_registry, get_registry, make_plugin_manager

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class ScoreGap(Evaluator):
    """Mean anomalous minus mean normal test score, to a power."""

    def __init__(self, power: float = 1.0):
        self.power = power

    def evaluate(self, run):
        s, y = run.scores.primary, run.scores.labels
        return {"gap": float(np.mean(s[y == 1]) - np.mean(s[y == 0])) ** self.power, "n": len(s),
                "undefined": float("nan"), "none": None}


class NeedsMasker(Evaluator):
    """Measures the masker."""

    def check(self, model):
        if model.masker is None:
            raise ValueError("needs a masker (model.masker)")


class Texty(Evaluator):
    """Returns text."""

    def evaluate(self, run):
        return {"verdict": "good"}


class EvalPlugin:
    @hookimpl
    def reconad_register_evaluators(self, register):
        register("gap", ScoreGap)
        register("needs_masker", NeedsMasker)
        register("texty", Texty)


@pytest.fixture(scope="module")
def registry():
    return build_registry(make_plugin_manager([EvalPlugin()], entry_points=False))


def _cfg(tiny_raw, registry, *sets):
    return validate(apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2", *sets]), registry)


def _scores_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["score"]) for r in rows]), np.array([int(r["label"]) for r in rows])


def test_an_evaluators_numbers_land_in_metrics_report_and_config(tiny_raw, registry, tmp_path):
    cfg = _cfg(tiny_raw, registry, "test.evaluators=[{name: gap, power: 2}]")
    assert [(e.name, e.params) for e in cfg.evaluators] == [("gap", {"power": 2.0})]
    out = str(tmp_path / "run")
    res = run(cfg, out, registry=registry, log=lambda s: None)
    s, y = _scores_csv(os.path.join(out, "scores.csv"))
    expected = (s[y == 1].mean() - s[y == 0].mean()) ** 2
    with open(os.path.join(out, "metrics.json")) as fh:
        got = json.load(fh)["evaluators"]
    assert got == res.metrics["evaluators"]
    assert got["gap"]["gap"] == pytest.approx(expected, rel=1e-5)
    assert got["gap"]["n"] == len(s) and got["gap"]["undefined"] is None and got["gap"]["none"] is None
    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "<h2>Evaluators</h2>" in html and f"{got['gap']['gap']:.4f}" in html
    # the resolved config keeps them, so `reconad test` on the checkpoint measures them again
    assert to_dict(cfg)["test"]["evaluators"] == [{"name": "gap", "power": 2.0}]
    again = evaluate_checkpoint(os.path.join(out, "checkpoint.pt"), str(tmp_path / "again"), device="cpu",
                                registry=registry)
    assert again.metrics["evaluators"]["gap"]["gap"] == pytest.approx(got["gap"]["gap"], rel=1e-6)


def test_per_defect_is_sklearns_auroc_of_the_normals_against_each_defect_type(tiny_raw, tmp_path):
    cfg = validate(apply_overrides(tiny_raw, ["train.steps=2", "test.report_images=2",
                                              "test.evaluators=[per_defect]"]))
    out = str(tmp_path / "run")
    got = run(cfg, out, log=lambda s: None).metrics["evaluators"]["per_defect"]
    with open(os.path.join(out, "scores.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = sorted({r["defect"] for r in rows if r["label"] == "1"})
    assert sorted(got) == kinds and len(kinds) == 3          # the textures' scratch, stain, paste
    for kind in kinds:
        sub = [r for r in rows if r["label"] == "0" or r["defect"] == kind]
        expected = roc_auc_score([int(r["label"]) for r in sub], [float(r["score"]) for r in sub])
        assert got[kind] == pytest.approx(expected, abs=1e-9), kind


def test_a_config_without_evaluators_resolves_as_before(tiny_raw, registry):
    cfg = _cfg(tiny_raw, registry)
    assert cfg.evaluators == [] and "evaluators" not in to_dict(cfg)["test"]
    both = _cfg(tiny_raw, registry, "test.evaluators=[gap, needs_masker]")
    assert [e.name for e in validate_resolved(to_dict(both), registry).evaluators] == ["gap", "needs_masker"]


@pytest.mark.parametrize("value, message", [
    ("[gapp]", r"test.evaluators\[0\].name: unknown evaluator 'gapp'.*did you mean 'gap'\?"),
    ("[{name: gap, power: high}]", r"test.evaluators\[0\].power: expected float"),
    ("[{name: gap, pwer: 2}]", r"test.evaluators\[0\].pwer: unknown key; did you mean 'power'\?"),
    ("[gap, gap]", r"test.evaluators: 'gap' is listed more than once"),
    ("7", r"test.evaluators: expected a list of evaluators"),
])
def test_bad_evaluators_are_config_errors_naming_the_key(tiny_raw, registry, value, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tiny_raw, registry, f"test.evaluators={value}")


def test_an_evaluator_that_cannot_measure_the_model_stops_the_run_before_training(tiny_raw, registry, tmp_path):
    cfg = _cfg(tiny_raw, registry, "test.evaluators=[needs_masker]")
    with pytest.raises(RunError, match=r"test.evaluators\[0\] \(needs_masker\): cannot measure this model: needs a "
                                       r"masker"):
        run(cfg, str(tmp_path / "run"), registry=registry, log=lambda s: None)
    assert not os.path.exists(tmp_path / "run" / "checkpoint.pt")


def test_an_evaluator_returning_text_is_an_error_naming_it_and_the_key(tiny_raw, registry, tmp_path):
    cfg = _cfg(tiny_raw, registry, "test.evaluators=[texty]")
    with pytest.raises(RunError, match=r"test.evaluators: 'texty' returned verdict='good'; expected a number"):
        run(cfg, str(tmp_path / "run"), registry=registry, log=lambda s: None)


EVALUATORS = [s for s in get_registry() if s.kind == "evaluator"]


@pytest.mark.parametrize("spec", EVALUATORS, ids=[s.name for s in EVALUATORS])
def test_every_registered_evaluator_builds_from_its_defaults_and_is_documented(spec):
    assert isinstance(spec.build(), Evaluator) and spec.description
