"""End to end: ``reconad run configs/oled/*.yaml`` (tiny overrides) writes all four OLED scores; ``reconad oled
segment`` on the trained run equals the config's ``oled_segmentation`` evaluator; an OLED video run (configs/oled/video.yaml) scored with ``reconad video``, its
frame scores against sklearn."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reconad.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = ["--set", "data.image_size=16", "--set", "data.anomalies_per_class=4", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "train.progress=false", "--set", "train.device=cpu",
        "--set", "model.encoder.channels=[8,16]", "--set", "model.encoder.latent_dim=8",
        "--set", "model.decoder.channels=[16,8]", "--set", "test.report_images=2"]

VIDEO_TINY = [a for kv in TINY[1::2] if kv != "data.anomalies_per_class=4" for a in ("--set", kv)]  # no digits keys


@pytest.fixture(scope="module")
def oled_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("oled") / "run")
    assert main(["run", os.path.join(ROOT, "configs", "oled", "oled.yaml"), "--out", out,
                 "--set", "model.masker.channels=[4,8]", *TINY]) == 0
    return out


def _write_frames(folder, labels: list[int], seed: int = 0):
    """32x48 grey frames (2x3 patches of 16x16); anomalous ones get a bright square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i, lab in enumerate(labels):
        f = (rng.random((32, 48)) * 0.2).astype(np.float32)
        if lab:
            f[4:12, 20:28] = 1.0
        Image.fromarray((f * 255).astype(np.uint8)).save(folder / f"frame{i}.png")
    return folder


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_four_scores(out: str, scale: str = "reference") -> None:
    rows = _rows(os.path.join(out, "scores.csv"))
    assert {"score", "score_oled_mask", "score_oled_cont", "score_oled_rec"} <= set(rows[0])
    cols = {c: np.array([float(r[c]) for r in rows]) for c in
            ("score", "score_oled_mask", "score_oled_cont", "score_oled_rec")}
    if scale == "set":
        for c in ("score_oled_mask", "score_oled_cont", "score_oled_rec"):  # min-max over the test set
            assert cols[c].min() == pytest.approx(0.0) and cols[c].max() == pytest.approx(1.0)
    else:  # min-max over the held-out normals: the test set's anomalies leave [0, 1]
        assert max(cols[c].max() for c in ("score_oled_mask", "score_oled_cont", "score_oled_rec")) > 1.0
        threshold = json.load(open(os.path.join(out, "metrics.json")))["threshold"]
        assert 0.0 <= threshold <= 1.0 + 1e-6   # a quantile of held-out s_avg, each part of which is in [0, 1]
    np.testing.assert_allclose(cols["score"], (cols["score_oled_mask"] + cols["score_oled_cont"]
                                               + cols["score_oled_rec"]) / 3, atol=1e-6)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert {"oled", "oled_mask", "oled_cont", "oled_rec"} <= set(metrics["scorers"])
    labels = np.array([int(r["label"]) for r in rows])
    for name, col in (("oled", "score"), ("oled_mask", "score_oled_mask")):
        assert metrics["scorers"][name]["image_auroc"] == pytest.approx(roc_auc_score(labels, cols[col]), abs=1e-6)


def test_run_oled_config_writes_all_four_scores(oled_run):
    _check_four_scores(oled_run)


def test_run_random_mask_cae_config(tmp_path):
    out = str(tmp_path / "cae")
    assert main(["run", os.path.join(ROOT, "configs", "oled", "cae_random_mask.yaml"), "--out", out,
                 "--set", "model.masker.block=6", "--set", "model.scorers.0.scale=set",
                 *TINY]) == 0
    _check_four_scores(out, scale="set")


def test_segment_command_and_the_configs_evaluator_agree(oled_run, tmp_path):
    assert main(["oled", "segment", oled_run, "--out", str(tmp_path)]) == 0
    seg = json.load(open(tmp_path / "segmentation.json"))
    assert set(seg) == {"inlier", "outlier"} and all(0.0 <= v <= 1.0 for v in seg.values())
    # configs/oled/oled.yaml lists test.evaluators: [oled_segmentation]: the run measured the same
    measured = json.load(open(os.path.join(oled_run, "metrics.json")))["evaluators"]["oled_segmentation"]
    assert measured == pytest.approx(seg, abs=1e-9)


def test_segmentation_evaluator_refuses_a_model_without_mask_module_before_training(tmp_path, capsys):
    out = tmp_path / "cae"
    assert main(["run", os.path.join(ROOT, "configs", "oled", "cae_random_mask.yaml"), "--out", str(out),
                 "--set", "test.evaluators=[oled_segmentation]", *TINY]) != 0
    assert ("test.evaluators[0] (oled_segmentation): cannot measure this model: segmentation: needs an OLED Mask "
            "Module" in capsys.readouterr().err)
    assert not (out / "checkpoint.pt").exists()


def test_video_run_and_command(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    train = _write_frames(tmp_path / "train", [0] * 8, seed=2)
    assert main(["run", os.path.join(ROOT, "configs", "oled", "video.yaml"), "--out", run_dir,
                 "--set", f"data.root={train}", "--set", "data.patch=16", "--set", "model.masker.channels=[4,8]",
                 *VIDEO_TINY]) == 0
    labels = [0, 0, 1, 0, 1, 1]
    frames_dir = _write_frames(tmp_path / "frames", labels)
    (tmp_path / "labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    assert main(["video", run_dir, str(frames_dir), "--labels", str(tmp_path / "labels.txt"),
                 "--out", str(tmp_path)]) == 0
    rows = _rows(str(tmp_path / "frame_scores.csv"))
    assert [r["name"] for r in rows] == [f"frame{i}.png" for i in range(6)]
    metrics = json.load(open(tmp_path / "video_metrics.json"))
    for k, col in (("oled", "score"), ("oled_mask", "score_oled_mask"), ("oled_cont", "score_oled_cont"),
                   ("oled_rec", "score_oled_rec")):
        s = np.array([float(r[col]) for r in rows])
        assert metrics["scores"][k]["frame_auroc"] == pytest.approx(roc_auc_score(labels, s))
