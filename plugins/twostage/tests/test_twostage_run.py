"""``reconad run configs/twostage/*.yaml`` end to end (tiny), and an interrupted run resumed across the phase
switch keeps the encoder it had at the end of stage 1."""
from __future__ import annotations

import json
import os

import pytest
import torch

from reconad.config import load_config
from reconad.engine import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = ["data.image_size=16", "data.anomalies_per_class=3", "train.batch_size=16", "train.steps=5",
        "train.progress=false", "model.encoder.width=4", "model.decoder.width=4"]


def test_cli_run_twostage_config(tmp_path):
    from reconad.cli import main

    out = tmp_path / "run"     # the `reconad run` command, in this process (a fresh interpreter costs ~10 s)
    args = ["run", os.path.join(ROOT, "configs", "twostage", "twostage.yaml"), "--out", str(out),
            *[a for s in TINY + ["model.objective.pretrain_steps=3"] for a in ("--set", s)]]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"twostage", "twostage_mse", "twostage_ssim"} <= set(metrics["scorers"])
    header = (out / "scores.csv").read_text().splitlines()[0]
    assert "score_twostage_mse" in header and "score_twostage_ssim" in header


def test_every_twostage_config_validates():
    names = sorted(os.listdir(os.path.join(ROOT, "configs", "twostage")))
    assert {"cae.yaml", "twostage.yaml", "twostage_paper.yaml"} <= set(names)
    for name in names:
        cfg = load_config(os.path.join(ROOT, "configs", "twostage", name))
        assert cfg.model.objective.name == "twostage", name


def test_resume_across_the_phase_switch_keeps_the_stage1_encoder(tmp_path):
    cfg = load_config(os.path.join(ROOT, "configs", "twostage", "twostage.yaml"),
                      TINY + ["model.objective.pretrain_steps=2", "train.steps=4"])
    out = str(tmp_path / "r")
    run(cfg, out, test=False, stop_after_steps=2, log=lambda s: None)   # exactly the end of stage 1
    stage1 = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["model"]
    res = run(cfg, out, test=False, resume=True, log=lambda s: None)
    final = res.train.model.state_dict()
    enc = [k for k in final if k.startswith("encoder.")]
    dec = [k for k in final if k.startswith("decoder.") and final[k].is_floating_point()]
    assert enc and all(torch.equal(final[k], stage1[k]) for k in enc)
    assert any(not torch.equal(final[k], stage1[k]) for k in dec)


def test_balanced_score_is_fitted_on_the_held_out_images_and_kept_in_the_checkpoint(tmp_path):
    """balance: holdout: the factor on lam is the spread ratio of the two decoders' terms over the held-out
    normal images (scored again here with the plain eq. 10), saved with the weights, applied to every test image."""
    import csv

    import numpy as np

    from reconad.engine.evaluate import score_dataset
    from reconad.engine.trained import load_trained
    from reconad.engine.trainer import build_data
    from reconad.plugins import get_registry

    cfg = load_config(os.path.join(ROOT, "configs", "twostage", "twostage.yaml"),
                      TINY + ["model.objective.pretrain_steps=2", "model.scorers.0.balance=holdout",
                              "data.holdout_fraction=0.2"])
    run(cfg, str(tmp_path / "run"), log=lambda s: None)
    trained = load_trained(str(tmp_path / "run"), device="cpu")
    scorer = trained.model.scorers[0]
    assert scorer.balance == "holdout"
    w = float(scorer.weight)
    scorer.weight.fill_(1.0)            # the raw terms on the held-out images, as fit_reference saw them
    holdout = build_data(cfg, get_registry()).holdout
    raw = score_dataset(trained.model, holdout, torch.device("cpu"), batch_size=16)
    mse, dssim = raw.image["twostage_mse"], raw.image["twostage_ssim"]
    assert w == pytest.approx(np.std(mse) / np.std(dssim), rel=1e-5) and w != 1.0
    with open(tmp_path / "run" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        expected = float(r["score_twostage_mse"]) - w * (1 - float(r["score_twostage_ssim"]))
        assert float(r["score"]) == pytest.approx(expected, abs=1e-6)
