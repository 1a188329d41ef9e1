"""The scorer extensions of the contract: ``Scores.parts``, set-level ``finalize`` and ``fixed_threshold``, and
the schedule fields the trainer hands objectives (``StepContext.epoch`` / ``steps_per_epoch`` / ``total_steps``)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from reconad.builtin.objectives import ReconstructionObjective
from reconad import hookimpl
from reconad.components import Scorer, Scores
from reconad.config import validate
from reconad.engine import run
from reconad.plugins import build_registry, make_plugin_manager

SEEN_CONTEXTS: list[tuple[int, int, int, int]] = []


class PartsScorer(Scorer):
    """Two parts (mean and max squared error); the image score is their set-normalised average."""

    def __init__(self, gamma: float | None = None) -> None:
        super().__init__()
        self.fixed_threshold = gamma

    def forward(self, outputs):
        err = (outputs["recon"] - outputs["input"]).pow(2).mean(1)
        mean, peak = err.flatten(1).mean(1), err.flatten(1).amax(1)
        return Scores(mean, err, parts={"mean": mean, "peak": peak})

    def finalize(self, scores):
        norm = {k: (v - v.min()) / (v.max() - v.min()) for k, v in scores.items() if k != "image"}
        return {**norm, "image": (norm["mean"] + norm["peak"]) / 2}


class RecordingObjective(ReconstructionObjective):
    def training_step(self, ctx, batch):
        SEEN_CONTEXTS.append((ctx.step_index, ctx.epoch, ctx.steps_per_epoch, ctx.total_steps))
        return super().training_step(ctx, batch)


class Plugin:
    @hookimpl
    def reconad_register_scorers(self, register):
        register("parts_test", PartsScorer)

    @hookimpl
    def reconad_register_objectives(self, register):
        register("recording", RecordingObjective)


@pytest.fixture(scope="module")
def parts_run(tmp_path_factory, tiny_base):
    registry = build_registry(make_plugin_manager([Plugin()], entry_points=False))
    raw = dict(tiny_base)
    raw["model"] = {**raw["model"], "scorers": [{"name": "parts_test", "gamma": 0.9}, "l2"],
                    "objective": "recording"}
    raw["train"] = {**raw["train"], "epochs": 2, "batch_size": 16}
    SEEN_CONTEXTS.clear()
    out = str(tmp_path_factory.mktemp("parts") / "run")
    result = run(validate(raw, registry), out, registry=registry, log=lambda *_: None)
    return result, list(SEEN_CONTEXTS)


def test_parts_are_scores_of_their_own_in_csv_and_metrics(parts_run):
    result, _ = parts_run
    with open(os.path.join(result.out_dir, "scores.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])
    cols = {c: np.array([float(r[c]) for r in rows]) for c in
            ("score", "score_parts_test_mean", "score_parts_test_peak", "score_l2")}
    # finalize ran over the whole test set: parts are min-max normalised, the image score is their mean
    for c in ("score_parts_test_mean", "score_parts_test_peak"):
        assert cols[c].min() == pytest.approx(0.0) and cols[c].max() == pytest.approx(1.0)
    np.testing.assert_allclose(cols["score"], (cols["score_parts_test_mean"] + cols["score_parts_test_peak"]) / 2,
                               rtol=1e-6, atol=1e-6)
    metrics = json.load(open(os.path.join(result.out_dir, "metrics.json")))
    scorers = metrics["scorers"]
    assert set(scorers) == {"parts_test", "parts_test_mean", "parts_test_peak", "l2"}
    for name, col in (("parts_test", "score"), ("parts_test_peak", "score_parts_test_peak"), ("l2", "score_l2")):
        assert scorers[name]["image_auroc"] == pytest.approx(roc_auc_score(labels, cols[col]), abs=1e-6)


def test_fixed_threshold_replaces_the_holdout_quantile(parts_run):
    result, _ = parts_run
    assert result.metrics["threshold"] == pytest.approx(0.9)
    assert result.metrics["scorers"]["parts_test"]["threshold"] == pytest.approx(0.9)
    # the other scores keep the quantile of held-out normal scores
    assert result.metrics["scorers"]["l2"]["threshold"] != pytest.approx(0.9)
    with open(os.path.join(result.out_dir, "scores.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(int(r["predicted"]) == int(float(r["score"]) > 0.9) for r in rows)


def test_objectives_see_epoch_and_schedule(parts_run):
    _, seen = parts_run
    steps_per_epoch, total = seen[0][2], seen[0][3]
    assert total == 2 * steps_per_epoch and len(seen) == total
    assert [s[0] for s in seen] == list(range(total))
    assert [s[1] for s in seen] == [i // steps_per_epoch for i in range(total)]


def test_finalize_with_wrong_keys_is_an_error(tiny_raw, tmp_path):
    class BadScorer(PartsScorer):
        def finalize(self, scores):
            return {"image": scores["image"]}

    class BadPlugin:
        @hookimpl
        def reconad_register_scorers(self, register):
            register("bad_parts", BadScorer)

    registry = build_registry(make_plugin_manager([BadPlugin()], entry_points=False))
    tiny_raw["model"]["scorers"] = ["bad_parts"]
    tiny_raw["train"] = {**tiny_raw["train"], "steps": 1, "epochs": None}
    with pytest.raises(Exception, match=r"bad_parts.*finalize\(\) must return the keys \['image', 'mean', 'peak'\]"):
        run(validate(tiny_raw, registry), str(tmp_path / "r"), registry=registry, log=lambda *_: None)


class UnmaskedScorer(Scorer):
    requires = ("recon_unmasked",)

    def forward(self, outputs):
        err = (outputs["recon_unmasked"] - outputs["input"]).pow(2).mean(1)
        return Scores(err.flatten(1).mean(1), err)


@pytest.mark.parametrize("masker", [None, {"name": "random_block", "block": 6, "count": 3, "at_eval": True}])
def test_scorers_that_require_the_unmasked_reconstruction_get_it(masker):
    from reconad.model import build_model

    class P:
        @hookimpl
        def reconad_register_scorers(self, register):
            register("unmasked_test", UnmaskedScorer)

    registry = build_registry(make_plugin_manager([P()], entry_points=False))
    model_cfg = {"encoder": {"name": "conv", "channels": [8, 16]}, "decoder": {"name": "conv"},
                 "scorers": ["unmasked_test"], **({"masker": masker} if masker else {})}
    cfg = validate({"data": {"name": "textures", "image_size": 16}, "model": model_cfg}, registry)
    model, _ = build_model(cfg.model, registry, 1, 16)
    model.eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        out = model(x)
        got = model.score(out)["unmasked_test"].image
        intact = model.reconstruct(x)
    np.testing.assert_allclose(got.numpy(), (intact - x).pow(2).mean((1, 2, 3)).numpy(), rtol=1e-5)
    assert "recon_unmasked" not in out  # computed for the scorers only
    if masker is None:
        np.testing.assert_allclose(intact.numpy(), out["recon"].numpy(), rtol=1e-5, atol=1e-6)
    else:  # the masked input's reconstruction is not what the scorer saw
        assert not torch.allclose(out["masked"], x) and not torch.allclose(out["recon"], intact)


def test_predict_finalizes_over_the_predicted_set(parts_run, tmp_path):
    from PIL import Image

    from reconad.engine import predict

    result, _ = parts_run
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    registry = build_registry(make_plugin_manager([Plugin()], entry_points=False))
    predict(result.out_dir, [str(tmp_path)], str(tmp_path / "pred"), device="cpu", registry=registry)
    with open(tmp_path / "pred" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mean = np.array([float(r["score_parts_test_mean"]) for r in rows])
    peak = np.array([float(r["score_parts_test_peak"]) for r in rows])
    assert len(rows) == 5 and mean.min() == pytest.approx(0.0) and mean.max() == pytest.approx(1.0)
    np.testing.assert_allclose([float(r["score"]) for r in rows], (mean + peak) / 2, rtol=1e-6, atol=1e-6)
    # the fixed threshold applies to the finalised score
    assert all(int(r["predicted"]) == int(float(r["score"]) > 0.9) for r in rows)


class PlainModuleScorer(nn.Module):
    def forward(self, outputs):
        return Scores((outputs["recon"] - outputs["input"]).pow(2).flatten(1).mean(1))


def test_a_scorer_that_is_not_a_scorer_is_refused_with_its_name():
    from reconad.model import BuildError, build_model

    class P:
        @hookimpl
        def reconad_register_scorers(self, register):
            register("plain_test", PlainModuleScorer)

    registry = build_registry(make_plugin_manager([P()], entry_points=False))
    cfg = validate({"data": {"name": "textures", "image_size": 16},
                    "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "decoder": "conv",
                              "scorers": ["plain_test"]}}, registry)
    with pytest.raises(BuildError, match=r"scorer 'plain_test' \(.*\) must be a reconad.components.Scorer, "
                                         r"got PlainModuleScorer; subclass Scorer"):
        build_model(cfg.model, registry, 1, 16)


def test_scorer_defaults_change_nothing():
    from reconad.engine.evaluate import finalize_scores, fixed_thresholds
    from reconad.model import ReconModel

    class Plain(Scorer):
        def forward(self, outputs):
            return Scores(outputs["input"].flatten(1).mean(1))

    model = ReconModel(nn.Identity(), nn.Identity(), scorers=[Plain(), PartsScorer(gamma=0.5)],
                       scorer_names=["plain", "parts"])
    assert Plain.requires == () and fixed_thresholds(model) == {"parts": 0.5}
    image = {"plain": np.array([3.0, 1.0, 2.0]), "parts": np.array([1.0, 2.0, 4.0]),
             "parts_mean": np.array([1.0, 2.0, 4.0]), "parts_peak": np.array([2.0, 4.0, 6.0])}
    out = finalize_scores(model, image, {"parts": ["mean", "peak"]})
    np.testing.assert_array_equal(out["plain"], [3.0, 1.0, 2.0])          # the default finalize: unchanged
    np.testing.assert_allclose(out["parts"], [0.0, (1 / 3 + 0.5) / 2, 1.0])  # PartsScorer's own
